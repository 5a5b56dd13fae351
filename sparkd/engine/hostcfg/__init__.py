"""Host configuration: the desired state of a node's interconnect, its components, and the apply pipeline."""
