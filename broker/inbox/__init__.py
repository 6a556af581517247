"""The facilities staff inbox (web app).

It depends on the store, the contract and its own services, never on node internals.
"""
