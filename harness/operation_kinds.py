"""The names operator actions write into a history and the operation checkers read back.

Why a module of its own: the producer (a platform's operations) and the reader (harness.checkers) must
agree on these strings, and neither may import the other (platforms sit above checkers' data only
through the history).
"""

from __future__ import annotations

# Window kinds (``nemesis`` events) written by the operations below.
SCALE_KINDS = ("scale-node", "scale-gate")
ROLL_KINDS = ("config-update", "rolling-upgrade", "rollback")
RESTART_ROLL_KIND = "restart-rollout"  # per-instance windows of a rolling restart
BACKUP_KIND, WIPE_KIND, RESTORE_KIND, VOLUME_LOSS_KIND, ROTATE_KIND = (
    "backup", "wipe", "restore", "volume-loss", "rotate-secret")
# Sample names (``sample`` events) the operation checkers read.
VERSIONS_F, CONFIG_F, SECRET_F, RESTORED_F = "versions", "config-in-effect", "secret-rotation", "restored"
