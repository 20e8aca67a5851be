"""The seed design users have today: one thread, an unbounded queue, Pillow PNG, stdlib logging.

This is the second snippet of the write-up imagelog grew from (shared/seeds), parameterised on the
frame size only; it is the baseline ``make bench`` compares against.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

from PIL import Image


class SeedLogger:
    """``log_image_async(image_data)`` puts raw bytes on a queue; a thread saves PNGs."""

    def __init__(self, log_dir: str, size: tuple[int, int]) -> None:
        self.log_dir = log_dir
        self.size = size
        self.queue: queue.Queue[bytes | None] = queue.Queue()
        self.logger = logging.getLogger("seed")
        handler = logging.FileHandler(os.path.join(log_dir, "image_log.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s - %(message)s"))
        self.logger.addHandler(handler)
        self.logger.setLevel(logging.INFO)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        while True:
            image_data = self.queue.get()
            if image_data is None:
                break
            try:
                timestamp = int(time.time() * 1000)
                filepath = os.path.join(self.log_dir, f"image_{timestamp}_{self.queue.qsize()}.png")
                img = Image.frombytes("RGB", self.size, image_data)
                img.save(filepath)
                self.logger.info(f"Image logged at: {filepath}")
            except Exception as e:
                self.logger.error(f"Error logging image: {e}")
            finally:
                self.queue.task_done()

    def log_image_async(self, image_data: bytes) -> None:
        """Add image to logging queue."""
        self.queue.put(image_data)

    def close(self) -> None:
        """Wait for the queue to drain, then stop the thread."""
        self.queue.join()
        self.queue.put(None)
        self.thread.join()
