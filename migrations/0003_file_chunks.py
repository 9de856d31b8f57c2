"""Files in the database as 1 MiB chunks, so no process holds a whole file in memory.

``files`` keeps one row per file (its name, and now its ``size`` and ``chunk_size``);
its bytes move to ``file_chunks``, deleted with their file. Rows written before this
migration keep their bytes in ``files.data`` with ``size`` NULL and are read as they are.
The SQLite store keeps media as plain files, so on SQLite both tables stay empty (the
schema is the same on both dialects).
"""

from __future__ import annotations

import sqlalchemy


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Add ``files.size``, ``files.chunk_size`` and the ``file_chunks`` table."""
    blob = "BLOB" if dialect == "sqlite" else "BYTEA"
    number = "INTEGER" if dialect == "sqlite" else "BIGINT"
    conn.exec_driver_sql(f"ALTER TABLE files ADD COLUMN size {number}")
    conn.exec_driver_sql("ALTER TABLE files ADD COLUMN chunk_size INTEGER")
    conn.exec_driver_sql(
        f"""
        CREATE TABLE file_chunks (
            job_id TEXT NOT NULL,
            name TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data {blob} NOT NULL,
            PRIMARY KEY (job_id, name, seq),
            FOREIGN KEY (job_id, name) REFERENCES files (job_id, name) ON DELETE CASCADE
        )"""
    )
