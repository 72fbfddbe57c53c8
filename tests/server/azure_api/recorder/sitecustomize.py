"""Loaded (via PYTHONPATH) into the azure-ai-ml process of the tests when AZURE_CALLS_LOG is set: appends
each HTTP request the client's pipeline sends (method, URL, JSON body, status) to that file as JSON
lines. The client's own code is not changed; only azure-core's requests transport is wrapped."""

import json
import os

_log = os.environ.get("AZURE_CALLS_LOG")
if _log:
    from azure.core.pipeline.transport import RequestsTransport

    _send = RequestsTransport.send

    def _recording_send(self, request, **kwargs):  # noqa: ANN001, ANN202
        response = _send(self, request, **kwargs)
        body = request.data if isinstance(getattr(request, "data", None), (str, bytes)) else None
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = f"<{len(body)} bytes>"
        with open(_log, "a") as out:
            out.write(json.dumps({"method": request.method, "url": request.url, "body": parsed,
                                  "status": response.status_code}) + "\n")
        return response

    RequestsTransport.send = _recording_send
