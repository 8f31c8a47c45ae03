"""Request bodies, read once and strictly: one ``msgspec`` decoder per body type, built on first use.

Litestar converts bodies leniently ("50000" or 50000.0 become 50000); a money API takes integers as
integers and refuses fields it does not know. ``Strict[T]`` is the handler's DTO: the body is
decoded straight into ``T`` by that type's decoder, and the OpenAPI document still shows ``T``.

Rules (each answered 4xx problem+json, never 5xx, before anything is stored):
- not JSON, or not UTF-8 (RFC 8259 JSON is UTF-8): ``malformed_json`` (400);
- nested deeper than ``MAX_DEPTH`` arrays/objects: ``nesting_too_deep`` (400), checked before decoding;
- a field the type does not know: ``unknown_field`` (422) with the field's path (``$.customer.phon``);
- a value of the wrong type or out of its bounds: ``invalid_request`` (422) with the path;
- a control character (or lone surrogate) in any string or key: ``invalid_text`` (422) with the path;
- a field a type names in ``FIELD_CODES`` has its own code (``invalid_invoice_number``).
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import msgspec
from litestar.dto import DTOConfig, MsgspecDTO
from litestar.typing import FieldDefinition

from api.problems import ApiError
from jenius.messages import json_nesting_exceeds
from ledger.text import is_clean_text

T = TypeVar("T", bound=msgspec.Struct)
MAX_DEPTH = 32  # arrays and objects, the body itself included: far beyond any order's or seller's metadata
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_any = msgspec.json.Decoder()
# msgspec's messages end with " - at `$.path`"; an unknown field is named in backquotes.
_AT = re.compile(r" - at `(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>.*)`")
# A JSON string holds a control character or lone surrogate only as a \u escape (raw ones are not
# JSON), DEL and C1 controls also raw: a cheap test of the bytes tells when to look closer.
_SUSPECT = re.compile(rb"\\u00[01][0-9a-fA-F]|\\u00[7-9][0-9a-fA-F]|\\u[dD][89a-fA-F]|\x7f|\xc2[\x80-\x9f]")


def decoder_for(type_: Any) -> msgspec.json.Decoder[Any]:
    found = _decoders.get(type_)
    if found is None:
        found = _decoders[type_] = msgspec.json.Decoder(type_)
    return found


def decode_strict(body: bytes, type_: Any) -> Any:
    if json_nesting_exceeds(body, MAX_DEPTH):
        raise ApiError("nesting_too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = decoder_for(type_).decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc), getattr(type_, "FIELD_CODES", {})) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            "malformed_json", "the body is not JSON in UTF-8" if isinstance(exc, UnicodeError) else str(exc)
        ) from exc
    except RecursionError as exc:  # below MAX_DEPTH this cannot happen; never let it become a 500
        raise ApiError("nesting_too_deep", "JSON nested too deep") from exc
    if _SUSPECT.search(body):
        where = unclean_text_path(_any.decode(body))
        if where is not None:
            raise ApiError(
                "invalid_text",
                f"control character in text at `{where}`",
                errors=[{"code": "invalid_text", "path": where, "detail": "no control characters in text"}],
            )
    return value


def _validation_error(message: str, field_codes: dict[str, str]) -> ApiError:
    at = _AT.search(message)
    path = at.group("path") if at else "$"
    detail = message[: at.start()] if at else message
    unknown = _UNKNOWN.match(detail)
    if unknown:
        where = f"{path}.{unknown.group('field')}"
        return ApiError(
            "unknown_field",
            f"unknown field `{where}`",
            errors=[{"code": "unknown_field", "path": where, "detail": detail}],
        )
    code = field_codes.get(path, "invalid_request")
    return ApiError(code, message, errors=[{"code": code, "path": path, "detail": detail}])


def unclean_text_path(value: Any, path: str = "$") -> str | None:
    """The path of the first string (or key) holding a control character, else None."""
    if isinstance(value, str):
        return None if is_clean_text(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not is_clean_text(key):
                return path
            found = unclean_text_path(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unclean_text_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


class Strict(MsgspecDTO[T], Generic[T]):
    config = DTOConfig(forbid_unknown_fields=True)

    def decode_bytes(self, value: bytes) -> Any:
        return decode_strict(value, self.model_type)

    @classmethod
    def create_openapi_schema(cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any) -> Any:
        # The body is the wire type itself (no transfer model in between): document exactly that.
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.model_type, kwarg_definition=field_definition.kwarg_definition)
        )
