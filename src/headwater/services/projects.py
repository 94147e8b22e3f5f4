"""ProjectService: connected-user spaces and the public keys that verify their user tokens."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from headwater.errors import invalid, not_found, raise_if_invalid
from headwater.services._common import Backend, paginate, timestamp, update_paths
from headwater.store import Project, utcnow
from headwater.v1 import project_pb2, project_pb2_grpc

UPDATABLE = {"name", "signing_public_key"}


def public_key_problem(pem: str) -> str | None:
    """What keeps the PEM from verifying user tokens (an RSA public key of at least 2048 bits, as
    RS256 needs), or None."""
    if not pem.strip():
        return "is required: the PEM of the RSA public key that verifies user tokens"
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        return "is not a PEM public key (-----BEGIN PUBLIC KEY-----)"
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        return "must be an RSA key of at least 2048 bits (user tokens are RS256)"
    return None


def project_to_proto(row: Project) -> project_pb2.Project:
    return project_pb2.Project(
        id=row.id, org_id=row.org_id, name=row.name or None, signing_public_key=row.signing_public_key,
        created_at=timestamp(row.created_at), updated_at=timestamp(row.updated_at),
    )


def get_project(org_id: str, project_id: str) -> Project:
    row = Project.get_or_none((Project.id == project_id) & (Project.org == org_id))
    if row is None:
        raise not_found("project", project_id)
    return row


class ProjectServicer(project_pb2_grpc.ProjectServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    async def CreateProject(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        if problem := public_key_problem(request.project.signing_public_key):
            raise invalid("project.signing_public_key", problem)
        pem = request.project.signing_public_key.strip() + "\n"
        row = await self.backend.store.run(
            lambda: Project.create(org=org_id, name=request.project.name, signing_public_key=pem)
        )
        return project_pb2.CreateProjectResponse(project=project_to_proto(row))

    async def GetProject(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        row = await self.backend.store.run(get_project, org_id, request.id)
        return project_pb2.GetProjectResponse(project=project_to_proto(row))

    async def ListProjects(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        rows, next_token = await self.backend.store.run(
            lambda: paginate(Project.select().where(Project.org == org_id), Project, request)
        )
        return project_pb2.ListProjectsResponse(
            data=[project_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def UpdateProject(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        tops = {p.split(".")[0] for p in update_paths(request.update_mask, request.project)}
        violations = [
            (f"project.{top}", "is output only" if top in project_pb2.Project.DESCRIPTOR.fields_by_name
             else "is not a field of Project")
            for top in sorted(tops - UPDATABLE)
        ]
        pem = None
        if "signing_public_key" in tops:
            pem = request.project.signing_public_key.strip() + "\n"
            if problem := public_key_problem(request.project.signing_public_key):
                violations.append(("project.signing_public_key", problem))
        raise_if_invalid(violations)

        def update():
            row = get_project(org_id, request.id)
            if "name" in tops:
                row.name = request.project.name
            if pem:
                row.signing_public_key = pem
            row.updated_at = utcnow()
            row.save()
            return row

        row = await self.backend.store.run(update)
        self.backend.connected_users.forget()
        return project_pb2.UpdateProjectResponse(project=project_to_proto(row))

    async def DeleteProject(self, request, context):
        org_id = await self.backend.auth.org_id(context)
        await self.backend.store.run(lambda: get_project(org_id, request.id).delete_instance())
        self.backend.connected_users.forget()
        return project_pb2.DeleteProjectResponse(id=request.id, deleted=True)
