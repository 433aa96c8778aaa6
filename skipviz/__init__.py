"""skipviz: the plumbing shared by the skip-connection teaching notebooks."""
