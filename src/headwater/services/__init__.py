"""One servicer per proto service. Each translates protobuf to and from the store and upstream."""

from headwater.services._common import Backend
from headwater.services.consumers import ConsumerServicer
from headwater.services.credentials import CredentialServicer
from headwater.services.mutations import MutationServicer
from headwater.services.projects import ProjectServicer
from headwater.services.proxy import ProxyServicer, rest_routes
from headwater.services.streams import StreamServicer
from headwater.services.syncs import SyncServicer
from headwater.settings import Settings
from headwater.v1 import (
    consumer_pb2,
    consumer_pb2_grpc,
    credential_pb2,
    credential_pb2_grpc,
    mutation_pb2,
    mutation_pb2_grpc,
    project_pb2,
    project_pb2_grpc,
    proxy_pb2,
    proxy_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
)


def servicers(backend: Backend, settings: Settings):
    """(service descriptor, servicer, add-to-gRPC-server function) for every service we serve."""
    return [
        (sync_pb2.DESCRIPTOR.services_by_name["SyncService"], SyncServicer(backend),
         sync_pb2_grpc.add_SyncServiceServicer_to_server),
        (credential_pb2.DESCRIPTOR.services_by_name["CredentialService"], CredentialServicer(backend),
         credential_pb2_grpc.add_CredentialServiceServicer_to_server),
        (stream_pb2.DESCRIPTOR.services_by_name["StreamService"], StreamServicer(backend),
         stream_pb2_grpc.add_StreamServiceServicer_to_server),
        (project_pb2.DESCRIPTOR.services_by_name["ProjectService"], ProjectServicer(backend),
         project_pb2_grpc.add_ProjectServiceServicer_to_server),
        (proxy_pb2.DESCRIPTOR.services_by_name["ProxyService"], ProxyServicer(backend),
         proxy_pb2_grpc.add_ProxyServiceServicer_to_server),
        (mutation_pb2.DESCRIPTOR.services_by_name["MutationService"],
         MutationServicer(backend, settings.idempotency_lease_seconds),
         mutation_pb2_grpc.add_MutationServiceServicer_to_server),
        (consumer_pb2.DESCRIPTOR.services_by_name["ConsumerService"], ConsumerServicer(backend),
         consumer_pb2_grpc.add_ConsumerServiceServicer_to_server),
    ]


__all__ = ["Backend", "servicers", "rest_routes"]
