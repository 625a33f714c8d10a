"""Tasks: examples with question and answer, and a 0/1 correctness check c(z, y).

Importing this package registers every family (``trice.tasks.registry``)."""

from .base import Example, Task, extract_answer
from .registry import get_task, register, task_from_config
from . import gym, gsm8k, bbh, jsonl, hf  # noqa: E402,F401  (each registers its family)

__all__ = ["Example", "Task", "get_task", "register", "extract_answer", "task_from_config"]
