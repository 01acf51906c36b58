"""Receive a multipart upload straight into the jobs dir, enforcing the size limit while reading, and check
it with the same code as ``extract-frames`` before anything is accepted.

Starlette's own form parser spools every file part to the system temp folder, whole, before the route sees
it: a 10 GB upload would fill ``/tmp`` before it could be refused. Here the body is fed chunk by chunk to
``python_multipart``'s parser and the file part is written to ``incoming/<id>/`` as it arrives; the request
fails with 413 the moment the file passes the limit (or at once, when ``Content-Length`` already says so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from cosmos_cli.errors import BadInput
from cosmos_cli.io.video import load_model_input
from cosmos_cli.pipeline.samples import safe_name
from cosmos_cli.request import sample_from_fields
from cosmos_cli.serve.errors import ApiError
from cosmos_cli.serve.jobs import JobParams

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024
"""A text field (the prompt is the longest) larger than this is refused: fields are held in memory."""
FORM_OVERHEAD_BYTES = 1024 * 1024
"""Room for the text fields and multipart framing on top of the file's own limit."""


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    file_path: Path | None = None
    """Where the file part was written (inside the folder given to :func:`receive_form`)."""
    filename: str = ""
    """The client's own name for the file (its last path component), shown in messages."""
    file_bytes: int = 0


MAX_DISK_NAME = 100
"""Characters of the client's file name kept on disk (a file system allows 255 bytes; clients send more)."""


def _disk_name(filename: str) -> str:
    """A safe, short name for the staged upload: the client's name, cut to :data:`MAX_DISK_NAME` characters
    with its suffix kept (the suffix decides how the file is read)."""
    name = safe_name(filename)
    suffix = Path(name).suffix[:16]
    return name if len(name) <= MAX_DISK_NAME else name[: MAX_DISK_NAME - len(suffix)] + suffix


def too_large(max_file_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the upload is larger than the server's limit of {_mib(max_file_bytes)}")


class _FormSink:
    """``python_multipart`` callbacks: text fields into memory, the file part onto disk, limits enforced."""

    def __init__(self, folder: Path, max_file_bytes: int):
        self.folder, self.max_file_bytes = folder, max_file_bytes
        self.form = ReceivedForm()
        self.ended = False
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._data = bytearray()
        self._file: BinaryIO | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self._add_header(name=data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header(value=data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._data = b"", None, bytearray()

    def _add_header(self, name: bytes = b"", value: bytes = b"") -> None:
        self._header_name += name
        self._header_value += value

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise ApiError(422, "invalid_request", "a multipart part has no name in its Content-Disposition")
        self._name = options[b"name"].decode("utf-8", "replace")
        is_file = b"filename" in options
        if self._name in self.form.fields or (self._name == FILE_FIELD and self.form.file_path is not None):
            raise ApiError(422, "invalid_request", f"the field {self._name!r} is given twice")
        if is_file != (self._name == FILE_FIELD):
            what = "must be a file part (with a filename)" if self._name == FILE_FIELD else "must be a text field"
            raise ApiError(422, "invalid_request", f"the field {self._name!r} {what}")
        if is_file:
            client_name = options[b"filename"].decode("utf-8", "replace").replace("\\", "/")
            self.form.filename = client_name.rsplit("/", 1)[-1] or "upload"
            self.form.file_path = self.folder / _disk_name(self.form.filename)
            self._file = open(self.form.file_path, "wb")  # noqa: SIM115 (closed in on_part_end / close)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.form.file_bytes += end - start
            if self.form.file_bytes > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
            self._file.write(data[start:end])
        else:
            self._data += data[start:end]
            if len(self._data) > MAX_FIELD_BYTES:
                raise ApiError(
                    413, "payload_too_large", f"the field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes"
                )

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())  # on disk before the job row that points at it
            self._file.close()
            self._file = None
        elif self._name is not None:
            try:
                self.form.fields[self._name] = self._data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ApiError(422, "invalid_request", f"the field {self._name!r} is not UTF-8") from err

    def on_end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_form(request: Request, folder: Path, max_file_bytes: int) -> ReceivedForm:
    """Stream a ``multipart/form-data`` body: text fields into memory, the ``file`` part into ``folder``.

    Raises :class:`ApiError` (413 past the limit, 415 for another content type, 422 for a malformed
    form). The caller owns ``folder`` and removes it on failure.
    """
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(
            415, "unsupported_media_type", "send multipart/form-data with the video or image in a 'file' part"
        )
    max_body = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise too_large(max_file_bytes)
    sink = _FormSink(folder, max_file_bytes)
    parser = MultipartParser(options[b"boundary"], sink.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise too_large(max_file_bytes)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise ApiError(422, "invalid_request", f"malformed multipart body ({err})") from err
    finally:
        sink.close()
    if not sink.ended:
        raise ApiError(422, "invalid_request", "the multipart body ends before its closing boundary")
    return sink.form


def check_visual_input(path: Path, shown_as: str, num_frames: int, height: int, width: int) -> None:
    """Read the upload exactly as ``extract-frames`` and ``generate`` will (:func:`load_model_input`);
    a bad file raises :class:`ApiError` 422 with the CLI's one-line message, naming the client's file
    instead of the server's path."""
    try:
        load_model_input(path, num_frames, height, width)
    except BadInput as err:
        raise ApiError(422, "invalid_input", err.one_line().replace(str(path), shown_as)) from err


def commit_upload(staged: Path, target: Path) -> None:
    """Move a validated upload into ``uploads/`` (same filesystem: a rename) and make the rename durable."""
    os.replace(staged, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


FORM_SAMPLE_FIELDS = ("prompt", "seed", "top_p", "temperature", "num_input_frames", "num_frames")
"""The per-sample fields of :class:`~cosmos_cli.request.SampleRequest` a form may set."""
FORM_FIELDS = (*FORM_SAMPLE_FIELDS, "disable_diffusion_decoder")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def job_params(form: ReceivedForm, prompt_required: bool) -> JobParams:
    """The job's settings from the text fields, checked by the request validator that ``generate`` uses
    (a bad value is a one-line 422 that names the fix)."""
    if form.file_path is None:
        raise _invalid("the form has no 'file' part", "send the video or image to continue as 'file'")
    unknown = sorted(set(form.fields) - set(FORM_FIELDS))
    if unknown:
        raise _invalid(f"unknown form field {unknown[0]!r}", f"the fields are file, {', '.join(FORM_FIELDS)}")
    fields = form.fields
    try:
        sample = sample_from_fields(fields, FORM_SAMPLE_FIELDS)
    except BadInput as err:
        raise ApiError(422, "invalid_request", err.one_line()) from err
    prompt = sample.prompt.strip()
    if prompt_required and not prompt:
        raise _invalid("'prompt' is required for Video2World models", "add a prompt: what happens next")
    flag = fields.get("disable_diffusion_decoder", "false").strip().lower()
    if flag not in _TRUE + _FALSE:
        raise _invalid(f"disable_diffusion_decoder must be true or false, got {flag!r}", "use true or false")
    return JobParams(
        prompt=prompt,
        seed=sample.seed,
        top_p=sample.top_p,
        temperature=sample.temperature,
        num_input_frames=sample.num_input_frames,
        num_frames=sample.num_frames,
        disable_diffusion_decoder=flag in _TRUE,
        filename=form.filename,
    )


def _invalid(message: str, hint: str) -> ApiError:
    return ApiError(422, "invalid_request", f"{message} ({hint})" if hint else message)
