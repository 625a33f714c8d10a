"""Tasks: examples with question and answer, and a 0/1 correctness check c(z, y).

Importing this package registers every family (``trice.tasks.registry``)."""

from . import bbh, gsm8k, gym, hf, jsonl  # noqa: E402,F401  (each registers its family)
from .base import Example, Task, extract_answer
from .registry import get_task, register, task_from_config

__all__ = ["Example", "Task", "get_task", "register", "extract_answer", "task_from_config"]
