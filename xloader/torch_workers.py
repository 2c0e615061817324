"""torch's multi-process `DataLoader` iterator as `xloader.torch.DataLoader` runs it: finalized
safely from any thread, and a worker that dies while starting explained. Private to the adapter."""

from __future__ import annotations

import threading
from typing import Any

import torch.utils.data

from xloader._worker_errors import startup_causes
from xloader.torch_options import start_method


class WorkersIterator(torch.utils.data.dataloader._MultiProcessingDataLoaderIter):
    """torch's multi-process iterator, finalized safely from any thread: one abandoned mid-pass
    (e.g. kept by a traceback) may be garbage collected in its own pin-memory thread, where
    torch's `__del__` would join that thread from itself ("cannot join current thread") and
    leave its workers running. The shutdown moves to a new thread instead. And torch's "DataLoader
    worker (pid(s) ...) exited unexpectedly" before any batch came gets a note with the likely
    causes of a start-up failure (`_worker_errors.startup_causes`), the `__main__` guard first."""

    def __init__(self, loader: Any):
        self.start_method = start_method(loader.multiprocessing_context)
        self.received_any = False
        super().__init__(loader)

    def __next__(self) -> Any:
        try:
            item = super().__next__()
        except RuntimeError as error:  # torch's "DataLoader worker (pid(s) ...) exited unexpectedly"
            if not self.received_any and "exited unexpectedly" in str(error):
                causes = startup_causes(self.start_method, fallback="use num_workers=0")
                error.add_note(
                    f"No batch had come from the workers: a worker failed while starting. Likely causes: {causes}."
                )
            raise
        self.received_any = True
        return item

    def __del__(self) -> None:
        if getattr(self, "_pin_memory_thread", None) is threading.current_thread():
            threading.Thread(target=self._shutdown_workers, name="xloader-shutdown", daemon=True).start()
            return
        super().__del__()
