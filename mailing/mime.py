"""How a message is written on the wire: line lengths, header folding, address
headers and transfer encodings (RFC 5322, 2045, 2047, 2369).

The email package does most of it. Three things it gets wrong are done here:
an address header whose display name must be quoted loses its quotes when
folded (so ``"Smith, J <boss@evil.example>"`` becomes two recipients); a
header holding one word longer than a line (a signed List-Unsubscribe URL)
is turned into encoded words no mailbox provider reads as a URL; and a text
line longer than the folding width is taken to need quoted-printable.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UniqueAddressHeader
from email.policy import EmailPolicy, Policy
from typing import Any, cast

# RFC 2045 limits a quoted-printable (and base64) line to 76 characters and
# RFC 2047 an encoded word to 75; the email package uses one number for both
# and for the width it folds headers to, which keeps them within RFC 5322's 78.
WIDTH = 76
# RFC 5322's limit of any line. A text whose lines all fit travels as it is.
MAX_LINE = 998

# Display-name words written as they are: letters, digits and the atext
# characters that cannot start an encoded word ("=?") or a comment or a quote.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+")
_ENCODED_PREFIX, _ENCODED_SUFFIX = "=?utf-8?b?", "?="
# Bytes of a name per encoded word: its base64 and the wrapping fit in 75.
_BYTES_PER_WORD = (75 - len(_ENCODED_PREFIX) - len(_ENCODED_SUFFIX)) // 4 * 3


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), split between characters."""
    chunks: list[bytes] = [b""]
    for char in text:
        encoded = char.encode()
        if len(chunks[-1]) + len(encoded) > _BYTES_PER_WORD:
            chunks.append(b"")
        chunks[-1] += encoded
    return [
        _ENCODED_PREFIX + base64.b64encode(chunk).decode("ascii") + _ENCODED_SUFFIX
        for chunk in chunks
        if chunk
    ]


def _display_name_words(display_name: str) -> list[str]:
    """The display name as words: plain words as they are, anything else
    (quotes, brackets, commas, parentheses, letters outside ASCII, a word too
    long for a line) as encoded words of the whole name, which a reader
    decodes to text and never takes for an address."""
    words = display_name.split()
    if all(_PLAIN_WORD.fullmatch(word) and len(word) < WIDTH for word in words):
        return words
    return _encoded_words(display_name)


def fold_addresses(name: str, addresses: Sequence[Address], linesep: str = "\r\n") -> str:
    """The header ``name`` holding ``addresses``, folded between words to ``WIDTH``.

    An address (``addr_spec``) is never broken: a line holding one longer than
    the width passes it (RFC 5322 allows up to 998 characters). A local part
    outside ASCII is written as it is, for SMTPUTF8 (RFC 6532).
    """
    tokens: list[str] = []
    for index, address in enumerate(addresses):
        separator = "," if index < len(addresses) - 1 else ""
        if address.display_name:
            tokens += _display_name_words(address.display_name)
            tokens.append(f"<{address.addr_spec}>{separator}")
        else:
            tokens.append(f"{address.addr_spec}{separator}")
    lines = [f"{name}:"]
    for token in tokens:
        if len(lines[-1]) + 1 + len(token) <= WIDTH:
            lines[-1] += " " + token
        else:
            lines.append(" " + token)
    return linesep.join(lines) + linesep


class _AddressHeader(UniqueAddressHeader):
    """``From``, ``To``, ``Cc`` and ``Reply-To``, folded by ``fold_addresses``
    from the header's Address objects rather than by the email package.

    The registry mixes BaseHeader in, as it does for its own address headers;
    the type stubs cannot say so, hence the casts."""

    def fold(self, *, policy: Policy) -> str:
        header = cast(BaseHeader, self)
        if any(group.display_name is not None for group in self.groups):
            # A named group ("undisclosed-recipients:;"), which the service never writes.
            return BaseHeader.fold(header, policy=policy)
        return fold_addresses(header.name, self.addresses, policy.linesep)


_HEADERS = HeaderRegistry()
for _name in ("from", "to", "cc", "reply-to"):
    _HEADERS.map_to_type(_name, cast("type[BaseHeader]", _AddressHeader))

# Headers whose value is a list of URLs in angle brackets (RFC 2369).
_URL_LIST_HEADERS = frozenset({"list-unsubscribe"})
_BRACKETED = re.compile(r"<[^<>\s]*>")


class _MessagePolicy(EmailPolicy):
    """The email package's SMTP policy with the service's folding: headers and
    quoted-printable lines to ``WIDTH``, address headers by ``fold_addresses``,
    and List-Unsubscribe between its URLs, one per line and each whole (a
    mailbox provider must find the URL as it is: no unsubscribe button
    otherwise). Such a line may pass 78 characters, as one word cannot be
    folded; never 998."""

    def fold(self, name: str, value: Any) -> str:
        folded = self._url_list(name, value)
        return folded if folded is not None else super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        folded = self._url_list(name, value)
        return folded.encode("ascii") if folded is not None else super().fold_binary(name, value)

    def _url_list(self, name: str, value: Any) -> str | None:
        text = str(value)
        if name.lower() not in _URL_LIST_HEADERS or not text.isascii():
            return None
        urls = _BRACKETED.findall(text)
        if not urls or ", ".join(urls) != text.strip():
            return None  # not a plain list of URLs: folded as any other header
        return f"{name}: " + f",{self.linesep} ".join(urls) + self.linesep


# What every message is built with and written in: CRLF line ends, as on the wire.
MESSAGE_POLICY = _MessagePolicy(linesep="\r\n", max_line_length=WIDTH, header_factory=_HEADERS)


def transfer_encoding(text: str) -> str:
    """The Content-Transfer-Encoding of a text part: 7bit or 8bit while every
    line fits RFC 5322's 998 octets, quoted-printable (lines of 76) beyond.
    Chosen here: the email package compares lines with the folding width and
    would encode every paragraph longer than 76 characters."""
    if max((len(line) for line in text.encode().splitlines()), default=0) > MAX_LINE:
        return "quoted-printable"
    return "7bit" if text.isascii() else "8bit"
