"""One way for every form of the portal to answer a mistake: the same page again.

A refused form is never a dead end. The handler catches the typed error and
renders its own page once more with a :class:`FormState`: what was typed
(passwords excepted, the caller leaves them out), each mistake as a plain
sentence beside its field (``<p class="field-error" id=...>`` that the
input names in ``aria-describedby``), and one summary line at the top of
the page. The status is 400 for a mistake in what was typed and the
error's own for everything else (409 for a conflict, 401 for a wrong
password, 429 when limited); nothing was written.

Templates use the macros of ``_forms.html``; a page with several forms
picks its own with ``form_state.of("name")``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from markupsafe import Markup

from human_portal.errors import FormErrors, InvalidInput, LimitExceeded, PortalError

__all__ = [
    "BLANK",
    "Checks",
    "Confirmation",
    "FormState",
    "confirmed",
    "failed_form",
    "failure_status",
    "sentence",
]

_T = TypeVar("_T")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class FormState:
    """One form's typed values and mistakes, as its template shows them."""

    name: str = ""
    values: Mapping[str, str] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""

    def of(self, name: str, /) -> FormState:
        """This state if it is the form called ``name``, else a blank one."""
        return self if self.name == name else BLANK

    def value(self, name: str, default: str = "", /) -> str:
        return self.values.get(name, default)

    def problem(self, name: str, /) -> str:
        return self.problems.get(name, "")

    def error_id(self, name: str, /) -> str:
        return _ID_UNSAFE.sub("-", f"{self.name}-{name}-error")

    def described(self, name: str, /) -> Markup:
        """The attributes that tie an input to its mistake, for screen readers too."""
        if name not in self.problems:
            return Markup("")
        return Markup(' aria-invalid="true" aria-describedby="{}"').format(self.error_id(name))


BLANK = FormState()


def sentence(text: str, /) -> str:
    """'enter dollars like 25' → 'Enter dollars like 25.': a message as people read it."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def failure_status(error: PortalError, /) -> int:
    """400 for a mistake in what was typed (an amount out of bounds included); the
    error's own status otherwise (409 for a conflict or too little credit)."""
    return 400 if isinstance(error, InvalidInput | LimitExceeded) else error.http_status


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A risky action's second step: what it will do, in words, and one button to do it.

    The first step (a link or a form) only shows this page; nothing happens
    until its form, which carries ``confirm=yes``, is sent.
    """

    title: str
    consequences: Sequence[str]
    action: str
    button: str
    cancel_url: str
    fields: Mapping[str, str] = field(default_factory=dict)


def failed_form(
    name: str,
    error: PortalError,
    /,
    *,
    values: Mapping[str, str],
    fields: Collection[str],
    default_field: str | None = None,
    nothing_done: str = "nothing was saved",
) -> FormState:
    """The state that shows ``error`` on the form called ``name``.

    A mistake names its field; an error that names none (too little credit,
    a limit, a conflict) goes beside ``default_field`` when the form has one
    field it is about, else only into the summary.
    """
    problems: dict[str, str] = {}
    for field_name, problem in _problems_of(error).items():
        target = field_name if field_name in fields else default_field
        if target is not None and target not in problems:
            problems[target] = sentence(problem)
    if not problems:
        summary = f"{sentence(_problem_text(error))} {sentence(nothing_done)}"
    elif len(problems) == 1:
        summary = f"One field below needs a change; {nothing_done}."
    else:
        summary = f"{len(problems)} fields below need a change; {nothing_done}."
    return FormState(name, dict(values), problems, summary)


def _problems_of(error: PortalError) -> dict[str, str]:
    if isinstance(error, FormErrors):
        return dict(error.problems)
    if isinstance(error, InvalidInput):
        return {error.field: error.problem}
    return {"": error.message}


def _problem_text(error: PortalError) -> str:
    if isinstance(error, FormErrors):
        return "; ".join(error.problems.values())
    if isinstance(error, InvalidInput):
        return error.problem
    return error.message


class Checks:
    """Runs each field's check and keeps every mistake; ``done`` raises them together."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def run(self, check: Callable[[], _T], /, *, otherwise: _T) -> _T:
        try:
            return check()
        except FormErrors as error:
            for name, problem in error.problems.items():
                self.problems.setdefault(name, problem)
        except InvalidInput as error:
            self.problems.setdefault(error.field, error.problem)
        return otherwise

    def add(self, name: str, problem: str, /) -> None:
        self.problems.setdefault(name, problem)

    def done(self) -> None:
        if self.problems:
            raise FormErrors(self.problems)


def confirmed(form: Mapping[str, str], /) -> bool:
    """Whether a risky action's form was sent from its confirmation page."""
    return form.get("confirm") == "yes"
