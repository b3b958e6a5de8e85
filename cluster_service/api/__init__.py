"""The HTTP layer: the only package that imports Flask.

Blueprints (one per resource, all under ``contract.BASE_PATH``), request
schemas, the OpenAPI document, the JSON error handlers, the per-key limiter,
request ids and the access log. Views reach the domain through
:func:`cluster_service.api.extension.services`.
"""
