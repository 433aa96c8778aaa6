"""The optional fast engine behind `skipviz.landscape`: the same numbers as the reference path
(`functional_call` one point at a time, autograd for Hessian-vector products), only sooner.
Notebook 04 reads only the R-operator from here (`rop.hessian_operator`, whose equations it writes
out); every fast result is checked against the reference on every call (`landscape.surfaces`,
`landscape.products`).

- `graph.py`: `prove(model)`, what the fast paths may assume, checked on the traced graph;
- `program.py`: the one interpreter: a proven graph compiled into ops (one vocabulary, one
  table of activations, batch norms folded into the layer before them);
- `points.py`: a program run at P weight vectors in one forward pass (loss surfaces);
- `rop.py` (+ `sparse.py`): a program's Hessian-vector products by the R-operator (curvature);
- `kernels.py`: the batched Linear, Conv1d and batch-norm kernels both runners use.
"""
