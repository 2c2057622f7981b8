"""The contract between agent and collector: the versioned policy catalogue and the batch wire formats (1 and 2).

Imports only the standard library and orjson, so agents and tools in any environment can use it.
"""

from .batch import (
    MAX_SNAPSHOTS,
    SCHEMA_VERSION,
    SUPPORTED_VERSIONS,
    Batch,
    Product,
    Snapshot,
    encode_batch,
    format_hour,
    format_instant,
    parse_batch,
    parse_batch_obj,
    parse_hour,
)
from .catalogue import CATALOGUE, Catalogue, Entry, catalogue_file, load_catalogue, read_catalogue
from .coarsen import coarsen, is_coarse, round_sig2
from .errors import SchemaError
from .evolution import check_successor
from .identity import install_id_from_secret, new_secret, same_install
from .jsonschema import batch_json_schema
from .policy import parse_policy, policy_document
from .strict_json import decode_json

__all__ = [
    "CATALOGUE",
    "MAX_SNAPSHOTS",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "Batch",
    "Catalogue",
    "Entry",
    "Product",
    "SchemaError",
    "Snapshot",
    "batch_json_schema",
    "catalogue_file",
    "check_successor",
    "coarsen",
    "decode_json",
    "encode_batch",
    "format_hour",
    "format_instant",
    "install_id_from_secret",
    "is_coarse",
    "load_catalogue",
    "new_secret",
    "parse_batch",
    "parse_batch_obj",
    "parse_hour",
    "parse_policy",
    "policy_document",
    "read_catalogue",
    "round_sig2",
    "same_install",
]
