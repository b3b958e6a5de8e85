"""``GET /namespaces``: the namespaces of one agent's cluster."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from ..observability.timestamps import utc_timestamp
from .auth import require_user
from .extension import services
from .schemas import NamespacesQuery, NamespacesResponse, load_query

bp = Blueprint("namespaces", __name__)
_query = NamespacesQuery()
_response = NamespacesResponse()


@bp.get("/namespaces")
@require_user
def list_namespaces() -> Response:
    query = load_query(_query, request.args)
    namespaces = services().clusters.list_namespaces(g.user, query["agent_id"],
                                                     query["cluster_id"])
    return jsonify(_response.dump({
        "success": True,
        "agent_id": query["agent_id"],
        "cluster_id": query["cluster_id"],
        "namespaces": [ns.as_json() for ns in namespaces],
        "total_count": len(namespaces),
        "message": "Successfully retrieved namespaces from cluster",
        "timestamp": utc_timestamp(),
    }))
