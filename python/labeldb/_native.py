"""Loads liblabeldb (the C API over the Swift engine) and declares its functions for ctypes.

Nothing here knows the store's format: every read and write goes through the library.
"""
from __future__ import annotations

import ctypes
import os
from ctypes import (POINTER, Structure, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t,
                    c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)
from pathlib import Path

from . import _errors


class LabelColumns(Structure):
    """ldb_label_columns: where one label set's columns go."""
    _fields_ = [("version", POINTER(c_int32)), ("hard", POINTER(c_int32)), ("dense", POINTER(c_float)),
                ("top_classes", POINTER(c_int32)), ("top_probabilities", POINTER(c_float)),
                ("leftover", POINTER(c_float))]


class RegenColumns(Structure):
    """ldb_regen_columns: where one projector's regenerated labels go."""
    _fields_ = [("probabilities", POINTER(c_float)), ("status", POINTER(c_uint8))]


class BatchStruct(Structure):
    """ldb_batch: one batch read's request, the caller's buffers, and what the library sets."""
    _fields_ = [
        ("embeddings", c_int), ("metadata", c_int), ("payloads", c_int), ("taints", c_int),
        ("label_count", c_size_t), ("labels", POINTER(c_char_p)), ("soft_form", c_int), ("compact_k", c_int),
        ("regen_count", c_size_t), ("regen", POINTER(c_char_p)),
        ("found", POINTER(c_uint8)), ("embedding", POINTER(c_float)), ("metadata_offsets", POINTER(c_uint64)),
        ("payload_offsets", POINTER(c_uint64)), ("taint_index", POINTER(c_int32)),
        ("label_columns", POINTER(LabelColumns)), ("regen_columns", POINTER(RegenColumns)),
        ("found_count", c_size_t), ("metadata_bytes", POINTER(c_uint8)), ("metadata_size", c_size_t),
        ("payload_bytes", POINTER(c_uint8)), ("payload_size", c_size_t), ("taint_json", c_char_p),
    ]


class ViewParams(Structure):
    """ldb_view_params: the views of a per-view import, one per label row."""
    _fields_ = [("view", POINTER(c_uint32)), ("crop", POINTER(c_float)), ("flip", POINTER(c_uint8)),
                ("epoch", POINTER(c_uint16)), ("seed", POINTER(c_uint32)), ("extra_offsets", POINTER(c_uint64)),
                ("extra_bytes", POINTER(c_uint8))]


class ViewsStruct(Structure):
    """ldb_views: what ldb_read_views read (freed with ldb_views_free)."""
    _fields_ = [("samples", c_size_t), ("views", c_size_t), ("classes", c_size_t), ("k", c_size_t),
                ("offsets", POINTER(c_uint64)), ("versions", POINTER(c_int32)), ("view", POINTER(c_uint32)),
                ("crop", POINTER(c_float)), ("flip", POINTER(c_uint8)), ("epoch", POINTER(c_uint16)),
                ("seed", POINTER(c_uint32)), ("hard", POINTER(c_int32)), ("dense", POINTER(c_float)),
                ("top_classes", POINTER(c_int32)), ("top_probabilities", POINTER(c_float)), ("leftover", POINTER(c_float)),
                ("extra_offsets", POINTER(c_uint64)), ("extra_bytes", POINTER(c_uint8))]


SOFT_NONE, SOFT_DENSE, SOFT_COMPACT = 0, 1, 2


def _library_path() -> str:
    """LABELDB_LIBRARY when set, else the copy shipped inside the package."""
    override = os.environ.get("LABELDB_LIBRARY")
    if override:
        return override
    shipped = Path(__file__).with_name("_lib") / "liblabeldb.so"
    if shipped.exists():
        return str(shipped)
    raise ImportError(
        f"labeldb: the native library is missing ({shipped}); build it with Tools/build-python "
        "or set LABELDB_LIBRARY to a liblabeldb.so")


_P = c_void_p
_J = POINTER(c_char_p)  # char ** for JSON results
# ldb_fit_executor: (context, shard, request, length, reply, reply_length) -> status
FIT_EXECUTOR = ctypes.CFUNCTYPE(c_int, c_void_p, c_int32, POINTER(c_uint8), c_size_t, POINTER(POINTER(c_uint8)), POINTER(c_size_t))
_SIGNATURES = {
    "ldb_open": ([c_char_p, c_int, POINTER(_P)], c_int),
    "ldb_open_shard": ([c_char_p, c_size_t, c_char_p, POINTER(_P)], c_int),
    "ldb_corpus_manifest": ([c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_route": ([c_char_p, POINTER(c_uint64), c_size_t, POINTER(c_int32)], c_int),
    "ldb_create_corpus": ([c_char_p, c_char_p, c_size_t], c_int),
    "ldb_corpus_put": ([c_char_p, POINTER(c_uint64), c_size_t, POINTER(c_float), POINTER(c_uint64), POINTER(c_uint8),
                        POINTER(c_uint64), POINTER(c_uint8), c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_import_labels": ([c_char_p, c_char_p, POINTER(c_uint64), c_size_t, POINTER(c_float), POINTER(c_int64), c_size_t,
                                  POINTER(c_int32), POINTER(c_float), POINTER(c_float), c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_fit_projector": ([c_char_p, c_char_p, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_fit_projector_parts": ([c_char_p, c_char_p, c_char_p, FIT_EXECUTOR, c_void_p, POINTER(c_void_p)], c_int),
    "ldb_fit_part_open": ([c_char_p, c_int32, c_char_p, POINTER(_P)], c_int),
    "ldb_fit_part_serve": ([_P, c_char_p, c_size_t, POINTER(POINTER(c_uint8)), POINTER(c_size_t)], c_int),
    "ldb_fit_part_close": ([_P], None),
    "ldb_corpus_consensus": ([c_char_p, c_char_p, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_provenance": ([c_char_p, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_knn": ([c_char_p, POINTER(c_float), c_size_t, c_size_t, c_char_p, POINTER(c_uint64), POINTER(c_float),
                        POINTER(c_void_p)], c_int),
    "ldb_corpus_writer_open": ([c_char_p, POINTER(_P)], c_int),
    "ldb_corpus_writer_begin": ([_P, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_writer_commit": ([_P, POINTER(c_void_p)], c_int),
    "ldb_corpus_writer_abandon": ([_P], c_int),
    "ldb_corpus_writer_close": ([_P], c_int),
    "ldb_create": ([c_char_p, c_char_p, POINTER(_P)], c_int),
    "ldb_close": ([_P], c_int),
    "ldb_info": ([_P, POINTER(c_void_p)], c_int),
    "ldb_verify": ([_P, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_fit_projector": ([_P, c_char_p, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_txn_begin": ([_P, c_char_p, c_int, POINTER(_P)], c_int),
    "ldb_txn_commit": ([_P], c_int),
    "ldb_txn_abort": ([_P], None),
    "ldb_count": ([_P, POINTER(c_uint64)], c_int),
    "ldb_ids": ([_P, POINTER(POINTER(c_uint64)), POINTER(c_size_t)], c_int),
    "ldb_hard_labels": ([_P, c_char_p, POINTER(POINTER(c_uint64)), POINTER(POINTER(c_int32)), POINTER(c_size_t)], c_int),
    "ldb_get_many": ([_P, POINTER(c_uint64), c_size_t, POINTER(BatchStruct)], c_int),
    "ldb_query": ([_P, c_char_p, c_char_p, POINTER(POINTER(c_uint64)), POINTER(c_size_t)], c_int),
    "ldb_knn": ([_P, POINTER(c_float), c_size_t, c_size_t, c_char_p, POINTER(c_uint64), POINTER(c_float),
                 POINTER(c_void_p)], c_int),
    "ldb_label_sets": ([_P, POINTER(c_void_p)], c_int),
    "ldb_projectors": ([_P, POINTER(c_void_p)], c_int),
    "ldb_provenance": ([_P, POINTER(c_void_p)], c_int),
    "ldb_audit": ([_P, c_uint64, POINTER(c_void_p)], c_int),
    "ldb_agreement": ([_P, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_label_issues": ([_P, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_corpus_card": ([_P, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_consensus": ([_P, c_char_p, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_check_projector": ([_P, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_drop_labels": ([_P, c_char_p, POINTER(c_void_p)], c_int),
    "ldb_put": ([_P, POINTER(c_uint64), c_size_t, POINTER(c_float), POINTER(c_uint64), POINTER(c_uint8),
                 POINTER(c_uint64), POINTER(c_uint8), c_char_p, POINTER(c_void_p)], c_int),
    "ldb_delete": ([_P, POINTER(c_uint64), c_size_t, POINTER(c_uint64)], c_int),
    "ldb_import_labels": ([_P, c_char_p, POINTER(c_uint64), c_size_t, POINTER(c_float), POINTER(c_int64),
                           POINTER(c_uint64), POINTER(c_int64), c_char_p, POINTER(c_void_p)], c_int),
    "ldb_import_topk_labels": ([_P, c_char_p, POINTER(c_uint64), c_size_t, c_size_t, POINTER(c_int32), POINTER(c_float),
                                POINTER(c_float), c_char_p, POINTER(c_void_p)], c_int),
    "ldb_import_view_labels": ([_P, c_char_p, POINTER(c_uint64), c_size_t, POINTER(ViewParams), POINTER(c_float),
                                POINTER(c_int64), c_size_t, POINTER(c_int32), POINTER(c_float), POINTER(c_float),
                                c_char_p, POINTER(c_void_p)], c_int),
    "ldb_read_views": ([_P, c_char_p, POINTER(c_uint64), c_size_t, c_char_p, POINTER(POINTER(ViewsStruct))], c_int),
    "ldb_views_free": ([POINTER(ViewsStruct)], None),
    "ldb_relabel": ([_P, POINTER(c_uint64), c_size_t, c_char_p, POINTER(c_uint64)], c_int),
    "ldb_import_head": ([_P, c_char_p, POINTER(c_float), c_size_t, c_size_t, c_char_p], c_int),
    "ldb_backup": ([_P, c_char_p, c_char_p], c_int),
    "ldb_last_error": ([], c_char_p),
    "ldb_last_error_refused": ([], c_int),
    "ldb_version": ([], c_char_p),
    "ldb_free": ([c_void_p], None),
}

lib = ctypes.CDLL(_library_path())
for _name, (_args, _result) in _SIGNATURES.items():
    _function = getattr(lib, _name)
    _function.argtypes = _args
    _function.restype = _result


def check(code: int) -> None:
    """Raises the exception of a failing call's class, with the library's message."""
    if code == 0:
        return
    message = (lib.ldb_last_error() or b"").decode("utf-8", "replace")
    raise _errors.from_code(code, message, refused=bool(lib.ldb_last_error_refused()))


def take_string(pointer: c_void_p) -> str:
    """Copies a string the library allocated, then frees it."""
    if not pointer.value:
        return ""
    try:
        return ctypes.string_at(pointer.value).decode("utf-8")
    finally:
        lib.ldb_free(pointer)
