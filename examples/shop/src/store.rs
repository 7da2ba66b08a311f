//! The services' data: keyed tables behind one small interface, in memory by default and in
//! PostgreSQL when `DATABASE_URL` is set (through sqlx; the schema comes from the migrations
//! in `examples/shop/migrations`, applied at start). Each row is JSON under its table and key.

use std::{
    collections::BTreeMap,
    marker::PhantomData,
    sync::{Arc, RwLock},
};

use mesh::error::{ErrorKind, MeshError};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{
    PgPool, Row,
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
    postgres::PgPoolOptions,
};

/// A row's type: kept as JSON in PostgreSQL.
pub trait Record: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Record for T {}

/// Where the shop's tables live.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Option<PgPool>,
    namespace: Arc<str>,
}

/// The migrations the example ships, in the binary.
#[derive(Debug)]
struct Shipped;

impl MigrationSource<'static> for Shipped {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            Ok(vec![Migration::new(
                1,
                "rows".into(),
                MigrationType::Simple,
                include_str!("../migrations/0001_rows.sql").into(),
                false,
            )])
        })
    }
}

fn unavailable(error: impl std::fmt::Display) -> MeshError {
    MeshError::new(ErrorKind::Unavailable, format!("the database: {error}"))
}

impl Store {
    /// Tables in memory.
    pub fn memory() -> Self {
        Self {
            pool: None,
            namespace: "shop".into(),
        }
    }

    /// Tables in the PostgreSQL at `url`, migrated; table names prefixed with `namespace`
    /// (two shops may share a database).
    pub async fn postgres(url: &str, namespace: &str) -> Result<Self, MeshError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(unavailable)?;
        Migrator::new(Shipped)
            .await
            .map_err(unavailable)?
            .run(&pool)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            pool: Some(pool),
            namespace: namespace.into(),
        })
    }

    /// From the environment: PostgreSQL when `DATABASE_URL` is set (`SHOP_DATA_NAMESPACE`,
    /// `shop` by default, prefixing the tables), memory otherwise.
    pub async fn from_env(env: &[(String, String)]) -> Result<Self, MeshError> {
        let var = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        match var("DATABASE_URL").filter(|url| !url.is_empty()) {
            Some(url) => Self::postgres(url, var("SHOP_DATA_NAMESPACE").unwrap_or("shop")).await,
            None => Ok(Self::memory()),
        }
    }

    /// Whether the tables are in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.pool.is_some()
    }

    /// The table `name` of `service`.
    pub fn table<V: Record>(&self, service: &str, name: &str) -> Table<V> {
        let backend = match &self.pool {
            None => Backend::Memory(RwLock::default()),
            Some(pool) => Backend::Postgres {
                pool: pool.clone(),
                table: format!("{}/{service}/{name}", self.namespace),
            },
        };
        Table {
            backend,
            rows: PhantomData,
        }
    }
}

/// Rows of `V` by key.
#[derive(Debug)]
pub struct Table<V> {
    backend: Backend<V>,
    rows: PhantomData<V>,
}

#[derive(Debug)]
enum Backend<V> {
    Memory(RwLock<BTreeMap<String, V>>),
    Postgres { pool: PgPool, table: String },
}

fn decode<V: Record>(value: serde_json::Value) -> Result<V, MeshError> {
    serde_json::from_value(value).map_err(|e| {
        MeshError::new(
            ErrorKind::Internal,
            format!("a stored row does not read: {e}"),
        )
    })
}

fn encode<V: Record>(value: &V) -> Result<serde_json::Value, MeshError> {
    serde_json::to_value(value).map_err(|e| MeshError::new(ErrorKind::Internal, e.to_string()))
}

impl<V: Record> Table<V> {
    /// The row under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<V>, MeshError> {
        match &self.backend {
            Backend::Memory(rows) => Ok(read(rows).get(key).cloned()),
            Backend::Postgres { pool, table } => {
                let row = sqlx::query("SELECT value FROM shop_rows WHERE tbl = $1 AND key = $2")
                    .bind(table)
                    .bind(key)
                    .fetch_optional(pool)
                    .await
                    .map_err(unavailable)?;
                row.map(|row| decode(row.get("value"))).transpose()
            }
        }
    }

    /// Puts `value` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, value: V) -> Result<(), MeshError> {
        match &self.backend {
            Backend::Memory(rows) => {
                write(rows).insert(key.to_owned(), value);
                Ok(())
            }
            Backend::Postgres { pool, table } => {
                let mut connection = pool.acquire().await.map_err(unavailable)?;
                write_json(&mut connection, table, key, Some(encode(&value)?)).await
            }
        }
    }

    /// Puts `value` under `key` unless a row is there; whether it was put.
    pub async fn insert_new(&self, key: &str, value: V) -> Result<bool, MeshError> {
        match &self.backend {
            Backend::Memory(rows) => {
                let mut rows = write(rows);
                if rows.contains_key(key) {
                    return Ok(false);
                }
                rows.insert(key.to_owned(), value);
                Ok(true)
            }
            Backend::Postgres { pool, table } => {
                let done = sqlx::query(
                    "INSERT INTO shop_rows (tbl, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (tbl, key) DO NOTHING",
                )
                .bind(table)
                .bind(key)
                .bind(encode(&value)?)
                .execute(pool)
                .await
                .map_err(unavailable)?;
                Ok(done.rows_affected() == 1)
            }
        }
    }

    /// Every row, by key.
    pub async fn values(&self) -> Result<Vec<V>, MeshError> {
        match &self.backend {
            Backend::Memory(rows) => Ok(read(rows).values().cloned().collect()),
            Backend::Postgres { pool, table } => {
                sqlx::query("SELECT value FROM shop_rows WHERE tbl = $1 ORDER BY key")
                    .bind(table)
                    .fetch_all(pool)
                    .await
                    .map_err(unavailable)?
                    .into_iter()
                    .map(|row| decode(row.get("value")))
                    .collect()
            }
        }
    }

    /// Changes the row under `key` (absent: `None`; set to `None` to delete it), atomically:
    /// concurrent changes of one key happen one after the other.
    pub async fn update<R>(
        &self,
        key: &str,
        change: impl FnOnce(&mut Option<V>) -> R,
    ) -> Result<R, MeshError> {
        match &self.backend {
            Backend::Memory(rows) => {
                let mut rows = write(rows);
                let mut row = rows.remove(key);
                let result = change(&mut row);
                if let Some(row) = row {
                    rows.insert(key.to_owned(), row);
                }
                Ok(result)
            }
            Backend::Postgres { pool, table } => {
                let mut tx = pool.begin().await.map_err(unavailable)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
                    .bind(table)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let before = sqlx::query("SELECT value FROM shop_rows WHERE tbl = $1 AND key = $2")
                    .bind(table)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let mut row = before.map(|row| decode(row.get("value"))).transpose()?;
                let result = change(&mut row);
                write_row(&mut tx, table, key, row.as_ref()).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(result)
            }
        }
    }

    /// Changes several rows at once, atomically for the whole table (a few rows only: every
    /// row is read).
    pub async fn transact<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, V>) -> R,
    ) -> Result<R, MeshError> {
        match &self.backend {
            Backend::Memory(rows) => Ok(change(&mut write(rows))),
            Backend::Postgres { pool, table } => {
                let mut tx = pool.begin().await.map_err(unavailable)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(table)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let rows = sqlx::query("SELECT key, value FROM shop_rows WHERE tbl = $1")
                    .bind(table)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let mut before = BTreeMap::new();
                for row in rows {
                    before.insert(
                        row.get::<String, _>("key"),
                        row.get::<serde_json::Value, _>("value"),
                    );
                }
                let mut after = before
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), decode(value.clone())?)))
                    .collect::<Result<BTreeMap<String, V>, MeshError>>()?;
                let result = change(&mut after);
                for (key, value) in &after {
                    let value = encode(value)?;
                    if before.get(key) != Some(&value) {
                        write_json(&mut tx, table, key, Some(value)).await?;
                    }
                }
                for key in before.keys().filter(|key| !after.contains_key(*key)) {
                    write_json(&mut tx, table, key, None).await?;
                }
                tx.commit().await.map_err(unavailable)?;
                Ok(result)
            }
        }
    }
}

async fn write_row<V: Record>(
    tx: &mut sqlx::PgConnection,
    table: &str,
    key: &str,
    row: Option<&V>,
) -> Result<(), MeshError> {
    write_json(tx, table, key, row.map(encode).transpose()?).await
}

/// Upserts (or, for `None`, deletes) one row.
async fn write_json(
    tx: &mut sqlx::PgConnection,
    table: &str,
    key: &str,
    value: Option<serde_json::Value>,
) -> Result<(), MeshError> {
    let query = match value {
        Some(value) => sqlx::query(
            "INSERT INTO shop_rows (tbl, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
        )
        .bind(table)
        .bind(key)
        .bind(value),
        None => sqlx::query("DELETE FROM shop_rows WHERE tbl = $1 AND key = $2")
            .bind(table)
            .bind(key),
    };
    query.execute(tx).await.map_err(unavailable)?;
    Ok(())
}

fn read<V>(
    rows: &RwLock<BTreeMap<String, V>>,
) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, V>> {
    rows.read().unwrap_or_else(|e| e.into_inner())
}

fn write<V>(
    rows: &RwLock<BTreeMap<String, V>>,
) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, V>> {
    rows.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules both backends keep.
    async fn behaviour_suite(store: &Store, run: &str) {
        let table: Table<u32> = store.table(run, "counts");
        assert_eq!(table.get("a").await.unwrap(), None);
        table.put("a", 1).await.unwrap();
        assert!(!table.insert_new("a", 5).await.unwrap());
        assert!(table.insert_new("b", 2).await.unwrap());
        assert_eq!(table.values().await.unwrap(), [1, 2]);
        let old = table.update("a", |row| row.replace(10)).await.unwrap();
        assert_eq!(old, Some(1));
        table.update("b", |row| *row = None).await.unwrap();
        assert_eq!(table.get("b").await.unwrap(), None);
        let sum = table
            .transact(|rows| {
                rows.insert("c".into(), 3);
                rows.remove("a");
                rows.values().sum::<u32>()
            })
            .await
            .unwrap();
        assert_eq!(sum, 3);
        assert_eq!(table.values().await.unwrap(), [3]);
        // Concurrent updates of one key lose none.
        let adds = (0..20).map(|_| table.update("n", |row| *row = Some(row.unwrap_or(0) + 1)));
        futures_util::future::try_join_all(adds).await.unwrap();
        assert_eq!(table.get("n").await.unwrap(), Some(20));
    }

    #[tokio::test]
    async fn the_memory_tables_pass_the_behaviour_suite() {
        behaviour_suite(&Store::memory(), "memory").await;
    }

    #[tokio::test]
    async fn the_postgres_tables_pass_the_behaviour_suite() {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("skipped: DATABASE_URL is not set");
            return;
        };
        let run = format!("test-{}-{}", std::process::id(), line!());
        let store = Store::postgres(&url, &run).await.unwrap();
        behaviour_suite(&store, "suite").await;
    }
}
