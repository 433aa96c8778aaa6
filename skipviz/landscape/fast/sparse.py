"""Sparse matrices for the R-operator (`rop`): the Jacobian of the folded parameters and the
second-derivative terms of a folded batch norm, the same pattern at every point."""

from __future__ import annotations

import warnings

import torch


class SparseParts:
    """Entries of a sparse matrix that is the same at every point but for its values: rows,
    columns (k,) and values (P, k), collected piece by piece; `csr` lays the P copies out along
    the diagonal."""

    def __init__(self, points: int):
        self.points, self.rows, self.cols, self.values = points, [], [], []

    def add(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> None:
        """Entries at (rows, cols), index tensors of one shape; values a scalar tensor (the same
        everywhere) or (P, *that shape)."""
        self.rows.append(rows.reshape(-1))
        self.cols.append(cols.reshape(-1))
        flat = values.reshape(1, 1) if values.dim() == 0 else values.reshape(self.points, -1)
        self.values.append(flat.expand(self.points, len(self.rows[-1])))

    def entries(self, shape: tuple[int, int], transpose: bool = False, col_offset: int = 0) -> tuple:
        """(rows, cols, values) of the P blocks (transposed if asked), block p at rows
        p * shape[0] and columns col_offset + p * shape[1]."""
        rows, cols = torch.cat(self.rows), torch.cat(self.cols)
        if transpose:
            rows, cols = cols, rows
        shift = torch.arange(self.points).unsqueeze(1)
        return ((rows + shift * shape[0]).reshape(-1), (cols + shift * shape[1] + col_offset).reshape(-1),
                torch.cat(self.values, dim=1).reshape(-1))


def csr(parts: list[tuple], shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """A compressed-sparse-row matrix of `shape` from (rows, cols, values) parts; repeated
    entries add up."""
    rows, cols, values = (torch.cat(t) for t in zip(*parts))
    with warnings.catch_warnings():  # CSR support is marked beta; its products are what we use
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values.to(dtype), shape, check_invariants=False)
        return coo.coalesce().to_sparse_csr()
