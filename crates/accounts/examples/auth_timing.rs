//! Prints how long `Accounts::authenticate` takes for a device token: the
//! first check (Argon2id with the production parameters) and a reconnect
//! served from the verified-secret cache. Run it in release:
//!
//! ```text
//! cargo run --release -p tributary-accounts --example auth_timing
//! ```

use std::time::Instant;

use tributary_accounts::Accounts;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    tributary_accounts::add_owner(dir.path(), "ann", None)?;
    let token = tributary_accounts::add_device(dir.path(), "ann", "watch")?;
    println!(
        "add_owner + add_device (two hashes, two locked writes): {:?}",
        started.elapsed()
    );

    let accounts = Accounts::open(dir.path())?;
    let started = Instant::now();
    accounts.authenticate("watch", token.as_bytes())?;
    println!(
        "authenticate, first (Argon2id verify): {:?}",
        started.elapsed()
    );

    let rounds = 10_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        accounts.authenticate("watch", token.as_bytes())?;
    }
    println!(
        "authenticate, cached: {:?} each",
        started.elapsed() / rounds
    );

    let started = Instant::now();
    let refused = accounts.authenticate("watch", b"not the token").is_err();
    println!(
        "authenticate, wrong token (Argon2id verify, refused={refused}): {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    for _ in 0..rounds {
        accounts.reload_if_changed()?;
    }
    println!(
        "reload_if_changed, unchanged: {:?} each",
        started.elapsed() / rounds
    );
    Ok(())
}
