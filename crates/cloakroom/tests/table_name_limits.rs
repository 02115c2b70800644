//! Issue 14, point 9: a 63-character `--table` on PostgreSQL passed validation, then
//! PostgreSQL cut `<table>_user` to 63 bytes and `migrate` failed on a column. Validation now
//! names `table` and the derived name that is too long.

use cloakroom::Settings;

#[test]
fn a_63_character_table_on_postgres_is_refused_naming_the_derived_name() {
    let table = "s".repeat(63);
    let err = Settings::default()
        .with_database_url(Some("postgres://127.0.0.1/test".to_owned()))
        .with_table(table.clone())
        .validate()
        .expect_err("a table whose derived names PostgreSQL would truncate")
        .to_string();
    assert!(err.contains("`table`"), "{err}");
    assert!(err.contains(&format!("{table}_user_user_id_idx")), "{err}");
    assert!(err.contains("63-byte"), "{err}");
}
