-- Every service's rows: a table name, a key within it, the row as JSON.
CREATE TABLE IF NOT EXISTS shop_rows (
    tbl   text  NOT NULL,
    key   text  NOT NULL,
    value jsonb NOT NULL,
    PRIMARY KEY (tbl, key)
);
