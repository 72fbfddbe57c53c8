"""The workspace layer: the resources of a workspace and their rules, with real types.

Below ``server`` (which parses requests and maps results) and ``jobs`` (which runs them); above
``store``, ``uri``, ``identity``, ``auth`` and ``storage``. ``WorkspaceService`` owns data stores,
assets, models and computes; ``EndpointService`` endpoints and deployments and their rules;
``UploadArea`` the content-addressed upload area; ``AuthService`` (``principals.py``) principals,
API keys and role assignments, and who a bearer credential is.
"""

from batchpoint.workspace.endpoints import EndpointService
from batchpoint.workspace.service import DEFAULT_DATASTORE, WorkspaceService
from batchpoint.workspace.uploads import UploadArea

__all__ = ["DEFAULT_DATASTORE", "EndpointService", "UploadArea", "WorkspaceService"]
