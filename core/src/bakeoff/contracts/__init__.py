"""Wire formats and names shared by router, judge and controller.

Nothing here imports any other part of bakeoff: the snapshot and histogram
format (what a router writes and a judge reads) and the resource names (what
the CRDs, the controller and the router's cluster mode agree on).
"""
