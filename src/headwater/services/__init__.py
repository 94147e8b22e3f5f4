"""One servicer per proto service. Each translates protobuf to and from the store and upstream."""

from headwater.connect.flow import ConnectFlow
from headwater.rest import RawRoute
from headwater.services._common import Backend
from headwater.services.connect import ConnectServicer, page_routes
from headwater.services.consumers import ConsumerServicer
from headwater.services.credentials import CredentialServicer
from headwater.services.event_endpoints import EventEndpointServicer
from headwater.services.mutations import MutationServicer
from headwater.services.oauth_apps import OAuthAppServicer
from headwater.services.projects import ProjectServicer
from headwater.services.providers import ProviderServicer
from headwater.services.proxy import ProxyServicer, rest_routes
from headwater.services.streams import StreamServicer
from headwater.services.syncs import SyncServicer
from headwater.settings import Settings
from headwater.v1 import (
    connect_pb2,
    connect_pb2_grpc,
    consumer_pb2,
    consumer_pb2_grpc,
    credential_pb2,
    credential_pb2_grpc,
    event_pb2,
    event_pb2_grpc,
    mutation_pb2,
    mutation_pb2_grpc,
    oauth_app_pb2,
    oauth_app_pb2_grpc,
    project_pb2,
    project_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
    proxy_pb2,
    proxy_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
)


def servicers(backend: Backend, settings: Settings):
    """(service descriptor, servicer, add-to-gRPC-server function) for every service we serve."""
    connect = ConnectFlow(backend, settings.browser_url, settings.connect_session_seconds)
    return [
        (sync_pb2.DESCRIPTOR.services_by_name["SyncService"], SyncServicer(backend),
         sync_pb2_grpc.add_SyncServiceServicer_to_server),
        (credential_pb2.DESCRIPTOR.services_by_name["CredentialService"], CredentialServicer(backend),
         credential_pb2_grpc.add_CredentialServiceServicer_to_server),
        (oauth_app_pb2.DESCRIPTOR.services_by_name["OAuthAppService"], OAuthAppServicer(backend),
         oauth_app_pb2_grpc.add_OAuthAppServiceServicer_to_server),
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
        (connect_pb2.DESCRIPTOR.services_by_name["ConnectService"], ConnectServicer(backend, connect),
         connect_pb2_grpc.add_ConnectServiceServicer_to_server),
        (event_pb2.DESCRIPTOR.services_by_name["EventEndpointService"], EventEndpointServicer(backend),
         event_pb2_grpc.add_EventEndpointServiceServicer_to_server),
        (provider_pb2.DESCRIPTOR.services_by_name["ProviderService"], ProviderServicer(backend),
         provider_pb2_grpc.add_ProviderServiceServicer_to_server),
    ]


def raw_routes(services, settings: Settings) -> list[RawRoute]:
    """The bridge's raw routes (what JSON transcoding cannot express) of `servicers(...)`: the
    proxy's (any verb, bytes in and out), the hosted connect page's and the console's (HTML and forms)."""
    # Here, not at the top: the console reads through these servicers, so it imports this package.
    from headwater.console.pages import console_routes

    by_type = {type(servicer): servicer for _, servicer, _ in services}
    backend = by_type[SyncServicer].backend
    return [*rest_routes(by_type[ProxyServicer]), *page_routes(by_type[ConnectServicer].flow),
            *console_routes(backend, services, settings.secret_key, settings.browser_url)]


__all__ = ["Backend", "servicers", "raw_routes", "rest_routes"]
