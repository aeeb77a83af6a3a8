# Type stubs for the compiled Rust core, checked by `python -m mypy.stubtest actionqueue._core`.
__all__ = ["DEFAULT_MAX_RECORD_SIZE", "FORMAT_VERSION", "check_record_size", "crc32c"]

FORMAT_VERSION: int
DEFAULT_MAX_RECORD_SIZE: int

def check_record_size(size: int, max: int = ...) -> None: ...
def crc32c(data: bytes, initial: int = 0) -> int: ...
