//! PostgreSQL read queries behind `store::Reader` (see `read`).
