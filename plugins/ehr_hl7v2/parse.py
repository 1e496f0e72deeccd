"""Reading ER7 text into segments, fields, repetitions, components and sub-components, unescaped.

Parsing is left to libraries rather than hand-written splitting, because the details are where feeds differ: the
delimiters each message declares in MSH-1/MSH-2, repetitions, sub-components, and escape sequences (``\\F\\``
``\\S\\`` ``\\T\\`` ``\\R\\`` ``\\E\\``, ``\\X0D\\`` hex, ``\\.br\\`` formatting, ``\\H\\``/``\\N\\`` highlighting).
Two well-kept libraries share the work:

- hl7apy reads the header: it checks MSH-1/MSH-2 (no missing or repeated delimiter; the truncation character
  only from v2.7) and finds the version (MSH-12) that the acknowledgement must answer in.
- python-hl7 (``hl7``) splits the body and undoes the escapes with the message's own delimiters. hl7apy could
  parse the body too, but it builds a tree validated element by element against its per-version tables: 6 ms
  for a five-segment ADT, 19 ms for a thirteen-segment one, where a feed should read a message in well under
  2 ms; python-hl7 takes about a twentieth of that.

Tolerance, for what real feeds send: CR, LF or CRLF between segments, blank lines, a byte-order mark or stray
MLLP bytes around the message, and a line that does not start with a segment name (a sender that put a raw line
break inside a field) joined to the segment before it. A repetition, component or sub-component that is absent
reads as ``""``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import hl7
from hl7apy.parser import get_message_info

from plugins.ehr_hl7v2.errors import DATA_TYPE_ERROR, SEGMENT_SEQUENCE, MessageError

_BREAKS = re.compile(r"\r\n|\n|\r")
_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
# Escapes python-hl7 would render otherwise: highlighting dropped (not "_"), formatting breaks as newlines.
_APP_MAP = {"H": "", "N": "", ".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": ""}
Parts = list[list[str]]  # one repetition: components, each a list of raw sub-components


def _normalize(text: str, keep: frozenset[str] | None = None) -> str:
    """Segments separated by CR, blank lines dropped, continuation lines joined (see the module's docstring);
    with ``keep``, only the segments of those names (and MSH)."""
    body = text.strip("\ufeff\x0b\x1c\r\n\t ")
    separator = body[3] if body.startswith("MSH") and len(body) > 3 else "|"
    lines: list[str] = []
    for line in _BREAKS.split(body):
        stripped = line.strip()
        if not stripped:
            continue
        head = stripped[:3]
        if not lines or (_NAME.fullmatch(head) and (len(stripped) == 3 or stripped[3] == separator)):
            lines.append(stripped)
        else:
            lines[-1] += "\n" + line.rstrip()
    if keep is not None:
        lines = [line for index, line in enumerate(lines) if index == 0 or line[:3] in keep]
    return "\r".join(lines)


def _parts(field: Any) -> list[Parts]:
    """python-hl7 stops splitting where a value holds no further delimiter (a plain field is a one-item list,
    a repetition without components a string): make every field repetitions -> components -> sub-components."""
    repetitions: list[Parts] = []
    for repetition in field:
        if isinstance(repetition, str):
            repetitions.append([[repetition]])
        else:
            repetitions.append([[c] if isinstance(c, str) else [str(s) for s in c] for c in repetition])
    return repetitions


class Repetition:
    """One repetition of a field; calling it with a component (and sub-component) number gives the text."""

    __slots__ = ("_message", "_parts")

    def __init__(self, parts: Parts, message: Message) -> None:
        self._parts, self._message = parts, message

    def __call__(self, component: int = 1, sub: int = 1) -> str:
        try:
            raw = self._parts[component - 1][sub - 1]
        except IndexError:
            return ""
        return self._message.unescape(raw)

    def __bool__(self) -> bool:
        return any(s for c in self._parts for s in c)

    def components(self) -> list[str]:
        """Every component's text (its sub-components joined by ``&``)."""
        return ["&".join(self._message.unescape(s) for s in c) for c in self._parts]


class Segment:
    """One segment. ``ordinal`` counts segments of its name from 1; :meth:`location` names a place in it as the
    errors do (``PID-7``, or ``OBX[2]-5`` when the message has several OBX)."""

    __slots__ = ("_fields", "_message", "name", "ordinal", "unique")

    def __init__(self, name: str, fields: Any, message: Message, ordinal: int) -> None:
        self.name, self._fields, self._message, self.ordinal = name, fields, message, ordinal
        self.unique = True

    def location(self, field: int | None = None) -> str:
        base = self.name if self.unique else f"{self.name}[{self.ordinal}]"
        return base if field is None else f"{base}-{field}"

    def repetitions(self, field: int) -> list[Repetition]:
        """The non-empty repetitions of ``field`` (none when it is absent or empty)."""
        if field >= len(self._fields):
            return []
        found = [Repetition(p, self._message) for p in _parts(self._fields[field])]
        return [r for r in found if r]

    def first(self, field: int) -> Repetition:
        """The first non-empty repetition of ``field`` (an empty one when there is none)."""
        found = self.repetitions(field)
        return found[0] if found else Repetition([], self._message)

    def text(self, field: int, component: int = 1, sub: int = 1) -> str:
        """The text of a component of the field's first non-empty repetition, trimmed."""
        return self.first(field)(component, sub).strip()


@dataclass(frozen=True)
class Header:
    """What MSH says about the message and its sender (HD fields as their namespace id)."""

    sending_application: str
    sending_facility: tuple[str, ...]  # namespace id, universal id, universal id type
    receiving_application: str
    receiving_facility: str
    message_type: str
    trigger: str
    control_id: str
    processing_id: str
    version: str


def salvage_header(text: str) -> Header | None:
    """What MSH says, read plainly (no unescaping), from a message whose delimiters are declared wrongly: enough
    for its rejection to answer its control id and version. None without an MSH segment."""
    body = _normalize(text)
    if not body.startswith("MSH") or len(body) < 4:
        return None
    fields = body.split("\r", 1)[0].split(body[3])
    component = fields[1][:1] if len(fields) > 1 and fields[1][:1].strip() else "^"

    def part(field: int, index: int = 0) -> str:
        parts = fields[field - 1].split(component) if field - 1 < len(fields) else []
        return parts[index].strip() if index < len(parts) else ""

    return Header(
        sending_application=part(3),
        sending_facility=(part(4), part(4, 1), part(4, 2)),
        receiving_application=part(5),
        receiving_facility=part(6),
        message_type=part(9).upper(),
        trigger=part(9, 1).upper(),
        control_id=part(10),
        processing_id=part(11),
        version=part(12),
    )


class Message:
    """A parsed message: its header and segments in order. ``keep`` names the segments the caller reads: the
    others (NK1, IN1, Z segments ...) are left unparsed, which halves the time for a full ADT."""

    def __init__(self, text: str, keep: frozenset[str] | None = None) -> None:
        body = _normalize(text, keep)
        if not body.startswith("MSH"):
            raise MessageError(
                "not an HL7 v2 message: it does not begin with an MSH segment",
                code=SEGMENT_SEQUENCE,
                location="MSH",
                reject=True,
            )
        try:
            _encoding, _structure, version = get_message_info(body)
            self._tree = hl7.parse(body)
        except Exception as exc:  # hl7apy's ParserError/InvalidEncodingChars, python-hl7's ParseException
            raise MessageError(
                f"MSH-1/MSH-2 do not declare the delimiters: {exc}", code=DATA_TYPE_ERROR, location="MSH-2", reject=True
            ) from exc
        counts: Counter[str] = Counter()
        self.segments: list[Segment] = []
        for fields in self._tree:
            name = str(fields[0]).strip()
            counts[name] += 1
            self.segments.append(Segment(name, fields, self, counts[name]))
        for segment in self.segments:
            segment.unique = counts[segment.name] == 1
        msh = self.segments[0]
        self.header = Header(
            sending_application=msh.text(3),
            sending_facility=(msh.text(4), msh.text(4, 2), msh.text(4, 3)),
            receiving_application=msh.text(5),
            receiving_facility=msh.text(6),
            message_type=msh.text(9).upper(),
            trigger=msh.text(9, 2).upper(),
            control_id=msh.text(10),
            processing_id=msh.text(11),
            version=(version or msh.text(12)).strip(),
        )

    def unescape(self, raw: str) -> str:
        if self._tree.esc not in raw:
            return raw
        return str(self._tree.unescape(raw, app_map=_APP_MAP)).replace("\r\n", "\n").replace("\r", "\n")

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)
