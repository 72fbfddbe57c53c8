"""The use cases: what a caller of Batchpoint can do, each in one module, for every front door.

The native REST routers (``server/routers/``), the web UI (``server/ui/``) and the Azure-shaped API
(``server/azure_api/``) parse a request, call one function here and map its result to their shape;
none of them holds a use case or reads the metadata store or a data store itself (an import-linter
contract in ``pyproject.toml`` keeps the routers and the UI off ``store`` and ``storage``).

=================  =====================================================================
module             use case
=================  =====================================================================
``invoke``         invoke an endpoint: a new job (idempotent, audited, the dispatcher woken)
``rerun``          a new job over a finished job's files (the same body as invoke: ``start``)
``start``          the one body both share: assignments, idempotency, submit, audit, notify
``cancel``         cancel a job
``events``         a job's events: a page of them, or a server-sent-event stream
``outputs``        a job's outputs: list their files, open one, read the errors file
``logs``           a job's log files: list them, read one
``files``          the files of a data store: look one up, write one, open one
``deletes``        delete an endpoint or a deployment (guarded by their queued or running jobs)
``access``         principals, API keys, role assignments, the audit log
``assets``         data asset and model versions as records; registering one idempotently
``codes``          code versions (their upload's content hash checked) and environment versions
``blobs``          the Azure-shaped API's blob endpoint: a container's blobs, the client's uploads
``reads``          the other reads: endpoints, deployments, jobs, assets, computes, data stores
``workers``        this server's warm workers per deployment (count, memory, idle time left)
=================  =====================================================================

Every function takes the app's services first (:class:`~batchpoint.usecases.services.Services`,
which ``server.context.AppContext`` satisfies) and the caller's principal where it matters.
docs/architecture.md walks one invoke from its route through here to the worker.
"""
