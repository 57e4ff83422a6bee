"""Postgres persistence: schema, row mapping, the write-behind writer, the traditional store.

Both paths map records to rows with :mod:`persistence.rows`, so they write identical rows.
"""
