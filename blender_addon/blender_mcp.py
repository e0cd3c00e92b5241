"""What a blender-mcp client (the `mcp-for-blender` MCP server, 2.x, and blender-mcp
1.x) needs of an addon beyond the scene commands, defined once: the addon answers it on
its port and the daemon's recording proxy answers it the same way (it imports this
module).

- Its probes: integration status (`get_<name>_status`), telemetry consent, `ping` and
  `get_addon_info`. They are answered as an up-to-date addon with every integration
  switched off answers them, so the client reports us current, offers no install, and
  never meets an error it would reconnect over.
- What we claim in `get_addon_info`: blender-mcp's addon protocol 15 (what
  mcp-for-blender 2.2.4 expects) and, as capabilities, only the blender-mcp commands
  this addon serves. The others (pick_viewport_object, get_world_state_snapshot, ...)
  answer blender-mcp's own "Unknown command type: X", which that client reads as "not
  in this addon version" and falls back from.
- Its observation scripts: the read-only scripts it sends through execute_code to look
  at the scene are wrapped by its `blender_scripts.build()`; `is_observation_script`
  recognises that wrapper.

Standard library only; no bpy in this module.
"""

from __future__ import annotations

import re

from .vocabulary import JSONObject

# blender-mcp's addon protocol that mcp-for-blender 2.2.4 checks for (its
# EXPECTED_ADDON_PROTOCOL_VERSION): an addon below it is reported outdated.
PROTOCOL_VERSION = 15
ADDON_NAME = "blender-scene-sessions"
ADDON_VERSION = [0, 1, 0]

# Integration -> the name a person reads. None of them is in this addon.
INTEGRATIONS = {
    "polyhaven": "Poly Haven",
    "hyper3d": "Hyper3D Rodin",
    "sketchfab": "Sketchfab",
    "polypizza": "Poly Pizza",
    "hunyuan3d": "Hunyuan3D",
    "meshy": "Meshy",
    "tripo": "Tripo",
}
STATUS_PROBES = {f"get_{name}_status": label for name, label in INTEGRATIONS.items()}
# Requests answered without Blender's main thread (`ping` is the link's own, and
# answers blender-mcp's shape already).
PROBES = frozenset({*STATUS_PROBES, "get_telemetry_consent", "set_telemetry_consent",
                    "get_addon_info"})  # fmt: skip
# blender-mcp commands this addon serves (get_addon_info's `capabilities`).
CAPABILITIES = (
    "execute_code",
    "get_addon_info",
    "get_object_info",
    "get_scene_info",
    "get_telemetry_consent",
    "get_viewport_screenshot",
    "list_scene_items",
    "set_telemetry_consent",
)
NO_TELEMETRY = "blender-scene-sessions collects no telemetry"


def answer_probe(kind: str, blender_version: str) -> JSONObject:
    """The result of a probe in PROBES (its params play no part: a consent is never
    recorded, there is nothing to record it for)."""
    label = STATUS_PROBES.get(kind)
    if label is not None:
        return {
            "enabled": False,
            "message": f"{label} is switched off: {ADDON_NAME} serves scene commands "
            "and has no asset or generation integrations",
        }
    if kind in ("get_telemetry_consent", "set_telemetry_consent"):
        return {"consent": False, "message": NO_TELEMETRY}
    if kind == "get_addon_info":
        return {
            "name": ADDON_NAME,
            "addon_version": list(ADDON_VERSION),
            "protocol_version": PROTOCOL_VERSION,
            "capabilities": list(CAPABILITIES),
            "blender_version": blender_version,
            "premium_generators": [],
        }
    raise KeyError(kind)


def unknown_command(kind: str) -> str:
    """blender-mcp's wording, which its clients recognise (and nothing more: our own
    command list would only end up in their error texts)."""
    return f"Unknown command type: {kind}"


# blender_scripts.build() of mcp-for-blender 2.x: the script's head and last line.
_OBSERVATION_HEAD = "import json as _json\nARGS = _json.loads("
_OBSERVATION_TAIL = re.compile(r"\nprint\('__MCP_RESULT__' \+ _json\.dumps\(_main\(\)\)\)\n?\Z")


def is_observation_script(code: str) -> bool:
    """Whether `code` is one of blender-mcp's read-only observation scripts (its
    scene summary, `look`, bounds), by the wrapper its server puts around them."""
    return code.startswith(_OBSERVATION_HEAD) and _OBSERVATION_TAIL.search(code) is not None
