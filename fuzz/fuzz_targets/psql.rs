//! What psql on the PostgreSQL host answers to the database survey (roles,
//! databases, recorded migrations), as untrusted bytes: what is pending is
//! read or refused, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let db = nixmox::manifest::Database {
        key: None,
        name: "wiki".into(),
        owner: "wiki".into(),
        host: None,
        port: 5432,
        mode: Some(nixmox::manifest::DbMode::NativeMigration),
        migrations: vec![],
        additional: vec!["wiki_log".into()],
        password: None,
    };
    let _ = nixmox::nixos::database::pending(&db, &text, std::path::Path::new("/nonexistent"));
});
