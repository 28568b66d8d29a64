"""UserInputError: the one exception type for mistakes a user can make (a bad config value, a missing or
unreadable file or folder, a checkpoint that is truncated or of another kind, a run directory of another
config or format, a prior that cannot feed the target). `lsmia` prints its message as one line,
`lsmia CMD: error: MESSAGE`, and exits with code 2; from Python it is a ValueError naming the bad value."""
from __future__ import annotations


class UserInputError(ValueError):
    """A bad input the user can fix; the message names the value and what is allowed."""


def build_or_explain(path, what: str, build):
    """build() (construct a network, load its weights) or a UserInputError naming the damaged checkpoint."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        if isinstance(e, UserInputError):
            raise
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"{path}: the {what} checkpoint is damaged, its weights do not fit its architecture "
                             f"({type(e).__name__}: {why})") from None
