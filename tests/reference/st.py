"""tests/reference/st.py: a plain safetensors reader/writer for the reference scripts.

Written from spec/formats.md with numpy alone (Debian's python3-numpy), so the references do not
depend on graft's own reader. Supports F64, F32, F16, BF16, I64, I32, U32, U8.
"""
import json
import struct

import numpy as np

_DT = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "U32": np.uint32, "U8": np.uint8,
}
_REV = {np.dtype(v).str: k for k, v in _DT.items()}


def load(path):
    """Returns (tensors: dict name -> np.ndarray, metadata: dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        buf = raw[base + b: base + end]
        shape = tuple(e["shape"])
        if e["dtype"] == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32).reshape(shape)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_DT[e["dtype"]]).newbyteorder("<")).reshape(shape)
        out[name] = arr.copy()
    return out, meta


def save(path, tensors, metadata=None):
    """Writes tensors (dict name -> np.ndarray) as HF does: dtype-descending size, then name."""
    meta = {"format": "pt"}
    meta.update(metadata or {})
    items = []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        key = _REV.get(a.dtype.str)
        if key is None:
            raise ValueError(f"{name}: unsupported dtype {a.dtype}")
        items.append((name, key, a))
    items.sort(key=lambda t: (-t[2].dtype.itemsize, t[0]))
    header = {"__metadata__": meta}
    off = 0
    for name, key, a in items:
        header[name] = {"dtype": key, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, a in items:
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def nmse(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    den = float((ref * ref).sum())
    num = float(((a - ref) ** 2).sum())
    return num / den if den > 0 else num
