"""`docdrop`: the operator's command line for a DocDrop stack, local or deployed (never shipped to Lambda)."""
