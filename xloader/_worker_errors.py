"""The words of a worker process's death: NOTE [ Worker processes that fail safely ] (_workers.py).
One wording per cause, so the message users see (and the tests match) exists once."""

from __future__ import annotations

import signal
import sys
from typing import Any


def death_message(
    index: int, process: Any, start_method: str, ready: bool, key: tuple[int, int] | None, startup_traceback: str | None
) -> str:
    """Why worker `index` (a `multiprocessing.Process` that has ended) is gone: its exit code or
    signal, what it was doing (`key` = (epoch, batch), or None), the likely cause and the fix.
    `ready`: it had started; `startup_traceback`: its own, if it failed loading the dataset."""
    code = process.exitcode
    name = f"xloader worker process {index} (pid {process.pid}, {start_method})"
    if code is not None and code < 0:
        try:
            signal_name = signal.Signals(-code).name
        except ValueError:
            signal_name = f"signal {-code}"
        what = f"was killed by signal {-code} ({signal_name})"
        cause = {
            "SIGKILL": "the out-of-memory killer (see `dmesg`) or a kill command",
            "SIGSEGV": "a crash in native code (a decoder, or a library the load function calls)",
            "SIGBUS": "shared memory ran out (/dev/shm full) or a crash in native code",
        }.get(signal_name, "a signal sent by another process")
    else:
        what, cause = f"exited with code {code}", ""
    if not ready:
        return _startup_message(name, what, cause, startup_traceback, start_method)
    doing = f"while computing batch {key[1]} of epoch {key[0]}" if key is not None else "while idle"
    cause = cause or "the load function or transform ended the process (sys.exit, os._exit)"
    return (
        f"{name} {what} {doing}. Likely cause: {cause}. Reduce workers or max_queue_size, or use "
        "threads (use_multiprocessing=False). The next request starts new workers."
    )


def _startup_message(name: str, what: str, cause: str, worker_traceback: str | None, start_method: str) -> str:
    message = f"{name} {what} while starting, before it computed any batch."
    if worker_traceback is not None:
        return (
            f"{message} The dataset could not be loaded in the worker; its traceback:\n{worker_traceback}"
            "Define load functions and transforms in an importable module (not in __main__ of an "
            "interactive session), or use threads (use_multiprocessing=False)."
        )
    causes = startup_causes(start_method, cause)
    return f"{message} Its own traceback, if it printed one, is above on stderr. Likely causes: {causes}."


def startup_causes(
    start_method: str, cause: str = "", fallback: str = "use threads (use_multiprocessing=False)"
) -> str:
    """The likely causes of a worker that died while starting, numbered, most likely first:
    `cause` (e.g. the signal's), the missing `__main__` guard when it applies, an import error,
    a dataset that cannot be unpickled. `fallback` is the way around process workers."""
    causes = [cause] if cause else []
    main = sys.modules.get("__main__")
    if start_method != "fork" and getattr(main, "__file__", None):
        causes.append(
            f'the main script {main.__file__} has no `if __name__ == "__main__":` guard: {start_method} '  # type: ignore[union-attr]
            "workers import it again, and a script that trains at import starts workers from a worker. "
            f"Put the training code under the guard, or {fallback}"
        )
    causes += [
        "an import error in the worker (a module the dataset needs cannot be imported there)",
        "the dataset cannot be unpickled in the worker",
    ]
    return "; ".join(f"({number}) {text}" for number, text in enumerate(causes, 1))
