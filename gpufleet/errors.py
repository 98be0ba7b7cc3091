"""The two kinds of failure the CLI distinguishes, and their exit codes.

User input errors exit 2 with one line per problem: ``<where>: <what is wrong> (<how to fix>)``.
Runtime failures exit 1 with the failing step and the next action.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserInputError(Exception):
    """Bad input from the user: a config, job spec, payload or artifact. Exit code 2."""

    exit_code = 2

    def __init__(self, problems: Iterable[str]) -> None:
        # One line per problem, always: fold any line breaks a library put in its message.
        self.problems = [" ".join(p.split()) for p in problems] or ["input: invalid (check the input)"]
        super().__init__("\n".join(self.problems))


class RuntimeFailure(Exception):
    """Something failed while running: names the step and what to do next. Exit code 1."""

    exit_code = 1

    def __init__(self, step: str, message: str, next_action: str) -> None:
        self.step, self.message, self.next_action = step, message, next_action
        super().__init__(f"{step}: {message} (next: {next_action})")


class Interrupted(RuntimeFailure):
    """The user stopped a run (Ctrl-C). Exit code 130, as a shell reports SIGINT."""

    exit_code = 130
