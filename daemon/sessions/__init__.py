"""The session service: sessions, their one command path, and everything done to them.

- `session`: `Session`, which records its own commands (start_command/finish_command).
- `command_path`: the one path of every scene command, with its guarantees.
- `catalog` (finding sessions), `registry` (the open ones), `lifecycle` (open, close),
  `restore`, `snapshots`, `recovery` (at start-up), `housekeeping` (cleanup, idle
  sessions), `transfer` (export, import), `tracking` (the scene between snapshots).
- time travel: `checkpoints` (when and how a checkpoint is taken, retention),
  `timetravel` (the scene after any step: plans, bringing it back, as records),
  `scene_model` (object records and diffs), `travel` (the ops: checkpoint, timeline,
  diff, rewind, undo, a restarted Blender resumed).
- `blender`: what the service needs of a Blender link (a Protocol).
- `service`: `SessionService`, the thin facade the servers call.
"""

from .blender import BlenderLink, Blenders
from .checkpoints import CheckpointPolicy
from .command_path import CommandPath, Reply
from .housekeeping import Housekeeper
from .restore import choose_path, replay_plan
from .service import SessionService
from .session import CommandOutcome, CommandStart, Session

__all__ = [
    "BlenderLink",
    "Blenders",
    "CheckpointPolicy",
    "CommandOutcome",
    "CommandPath",
    "CommandStart",
    "Housekeeper",
    "Reply",
    "Session",
    "SessionService",
    "choose_path",
    "replay_plan",
]
