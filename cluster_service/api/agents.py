"""``GET /agents/connected``: the agents the Onboarding Service sees connected now."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from ..observability.timestamps import utc_timestamp
from .auth import require_user
from .extension import services
from .schemas import ConnectedAgentsResponse

bp = Blueprint("agents", __name__)
_response = ConnectedAgentsResponse()


@bp.get("/agents/connected")
@require_user
def connected_agents() -> Response:
    agents = services().clusters.connected_agents(g.user)
    return jsonify(_response.dump({"success": True, "connected_agents": agents,
                                   "total_count": len(agents), "timestamp": utc_timestamp()}))
