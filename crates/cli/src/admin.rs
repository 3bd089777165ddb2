//! `tributary owner|device|service|admin …`: the accounts of
//! `DATA_DIR/accounts.json` (see docs/accounts.md). Safe while `serve`
//! runs: each change is a locked read-modify-write replaced atomically, and
//! the broker reloads the file within about a second.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use tributary_accounts::{AdminInfo, DeviceInfo, Grant, Grants, Listing, ServiceInfo};

use crate::config::FileConfig;

/// Where the accounts are: the data dir of `serve`, composed the same way.
#[derive(Debug, Args)]
struct DataDirArgs {
    /// TOML config file (see docs/configuration.md); its `data_dir` is used
    /// unless `--data-dir` is given.
    #[arg(long, env = "TRIBUTARY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory of the broker [default: ./data].
    #[arg(long, env = "TRIBUTARY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        Ok(match &self.config {
            Some(path) => FileConfig::load(path)?.data_dir,
            None => FileConfig::default().data_dir,
        })
    }
}

#[derive(Debug, Args)]
pub struct OwnerArgs {
    #[command(subcommand)]
    command: OwnerCommand,
}

#[derive(Debug, Subcommand)]
enum OwnerCommand {
    /// Add an owner (a person); prints a generated password once.
    Add {
        /// 1–64 letters, digits, '_', '.', '-'; one namespace with devices,
        /// services and admins.
        name: String,
        /// Read the password from the first line of standard input instead
        /// of generating one (8 to 1024 bytes).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List owners with their number of devices.
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Add a device of an owner; prints its token once.
    Add {
        /// The owner the device belongs to.
        #[arg(long, value_name = "NAME")]
        owner: String,
        /// 1–64 letters, digits, '_', '.', '-'; the MQTT user name of the device.
        device: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Revoke a device: its token stops working and a running broker
    /// disconnects it within about a second.
    Revoke {
        device: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List devices (of one owner with --owner).
    List {
        #[arg(long, value_name = "NAME")]
        owner: Option<String>,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Add a service (a machine client such as the Kafka bridge); prints
    /// its token once.
    Add {
        /// 1–64 letters, digits, '_', '.', '-'; the MQTT user name of the service.
        name: String,
        /// What it may do, at least one: `read` (subscribe to every
        /// device's topics, wildcards allowed), `command` (publish to any
        /// device's commands/). Repeat for both.
        #[arg(long = "grant", value_name = "GRANT", required = true, value_parser = parse_grant)]
        grants: Vec<Grant>,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Revoke a service: its token stops working and a running broker
    /// disconnects it within about a second.
    Revoke {
        name: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List services with their grants.
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Add an admin (an operator who reads every device and commands any);
    /// prints a generated password once.
    Add {
        /// 1–64 letters, digits, '_', '.', '-'; one namespace with owners,
        /// devices and services.
        name: String,
        /// Read the password from the first line of standard input instead
        /// of generating one (8 to 1024 bytes).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List admins.
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

fn parse_grant(text: &str) -> Result<Grant, tributary_accounts::Error> {
    text.parse()
}

pub fn owner(args: OwnerArgs) -> anyhow::Result<()> {
    match args.command {
        OwnerCommand::Add {
            name,
            password_stdin,
            dir,
        } => add_with_password(
            "owner",
            &name,
            password_stdin,
            &dir,
            tributary_accounts::add_owner,
        ),
        OwnerCommand::List { dir } => {
            let listing = tributary_accounts::list(&dir.data_dir()?)?;
            print_owners(&listing);
            Ok(())
        }
    }
}

pub fn device(args: DeviceArgs) -> anyhow::Result<()> {
    match args.command {
        DeviceCommand::Add { owner, device, dir } => {
            let token = tributary_accounts::add_device(&dir.data_dir()?, &owner, &device)?;
            println!("device {device} of {owner} added; token (shown once): {token}");
            println!(
                "connect with: mosquitto_pub -u {device} -P {token} -t tributary/v1/{device}/... -m ..."
            );
            Ok(())
        }
        DeviceCommand::Revoke { device, dir } => {
            tributary_accounts::revoke_device(&dir.data_dir()?, &device)?;
            println!("device {device} revoked");
            Ok(())
        }
        DeviceCommand::List { owner, dir } => {
            let listing = tributary_accounts::list(&dir.data_dir()?)?;
            if let Some(owner) = &owner {
                if !listing.owners.iter().any(|o| o.name == *owner) {
                    anyhow::bail!("no owner named {owner}");
                }
            }
            let devices = listing
                .owners
                .iter()
                .filter(|o| owner.as_deref().is_none_or(|name| o.name == name))
                .flat_map(|o| o.devices.iter().map(move |d| (o.name.as_str(), d)));
            print_devices(devices);
            Ok(())
        }
    }
}

pub fn service(args: ServiceArgs) -> anyhow::Result<()> {
    match args.command {
        ServiceCommand::Add { name, grants, dir } => {
            let grants: Grants = grants.into_iter().collect();
            let token = tributary_accounts::add_service(&dir.data_dir()?, &name, grants)?;
            println!("service {name} added with grants {grants}; token (shown once): {token}");
            if grants.read {
                println!("connect with: mosquitto_sub -u {name} -P {token} -t 'tributary/v1/#'");
            } else if grants.packs && !grants.command {
                println!("define packs with: curl -u {name}:{token} -X POST http://HOST/api/v1/service/packs (docs/packs.md)");
            } else {
                println!(
                    "connect with: mosquitto_pub -u {name} -P {token} -t tributary/v1/DEVICE/commands/... -m ..."
                );
            }
            Ok(())
        }
        ServiceCommand::Revoke { name, dir } => {
            tributary_accounts::revoke_service(&dir.data_dir()?, &name)?;
            println!("service {name} revoked");
            Ok(())
        }
        ServiceCommand::List { dir } => {
            print_services(&tributary_accounts::list(&dir.data_dir()?)?.services);
            Ok(())
        }
    }
}

pub fn admin(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Add {
            name,
            password_stdin,
            dir,
        } => add_with_password(
            "admin",
            &name,
            password_stdin,
            &dir,
            tributary_accounts::add_admin,
        ),
        AdminCommand::List { dir } => {
            print_admins(&tributary_accounts::list(&dir.data_dir()?)?.admins);
            Ok(())
        }
    }
}

/// Adds an owner or admin (`add`) with the password from standard input,
/// or a generated one that is printed once.
fn add_with_password(
    kind: &str,
    name: &str,
    password_stdin: bool,
    dir: &DataDirArgs,
    add: fn(&std::path::Path, &str, Option<&str>) -> Result<String, tributary_accounts::Error>,
) -> anyhow::Result<()> {
    let data_dir = dir.data_dir()?;
    if password_stdin {
        let password = read_password_line()?;
        add(&data_dir, name, Some(&password))?;
        println!("{kind} {name} added");
    } else {
        let password = add(&data_dir, name, None)?;
        println!("{kind} {name} added; password (shown once): {password}");
    }
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(password.to_owned())
}

fn print_owners(listing: &Listing) {
    if listing.owners.is_empty() {
        println!("no owners");
        return;
    }
    let width = column_width(listing.owners.iter().map(|o| o.name.as_str()), "OWNER");
    println!("{:<width$}  {:<20}  DEVICES", "OWNER", "CREATED");
    for owner in &listing.owners {
        let revoked = owner.devices.iter().filter(|d| d.revoked.is_some()).count();
        let devices = match revoked {
            0 => owner.devices.len().to_string(),
            n => format!("{} ({n} revoked)", owner.devices.len()),
        };
        println!(
            "{:<width$}  {:<20}  {devices}",
            owner.name,
            utc(owner.created)
        );
    }
}

fn print_devices<'a>(devices: impl Iterator<Item = (&'a str, &'a DeviceInfo)> + Clone) {
    if devices.clone().next().is_none() {
        println!("no devices");
        return;
    }
    let width = column_width(devices.clone().map(|(_, d)| d.name.as_str()), "DEVICE");
    // The owner's name for it (docs/api.md: devices added in the dashboard
    // have a generated id as their DEVICE name).
    let label_width = column_width(devices.clone().map(|(_, d)| d.label.as_str()), "NAME");
    let owner_width = column_width(devices.clone().map(|(o, _)| o), "OWNER");
    println!(
        "{:<width$}  {:<label_width$}  {:<owner_width$}  {:<20}  REVOKED",
        "DEVICE", "NAME", "OWNER", "CREATED"
    );
    for (owner, device) in devices {
        println!(
            "{:<width$}  {:<label_width$}  {:<owner_width$}  {:<20}  {}",
            device.name,
            device.label,
            owner,
            utc(device.created),
            device.revoked.map_or_else(|| "-".to_owned(), utc)
        );
    }
}

fn print_services(services: &[ServiceInfo]) {
    if services.is_empty() {
        println!("no services");
        return;
    }
    let width = column_width(services.iter().map(|s| s.name.as_str()), "SERVICE");
    let grants: Vec<String> = services.iter().map(|s| s.grants.to_string()).collect();
    let grants_width = column_width(grants.iter().map(String::as_str), "GRANTS");
    println!(
        "{:<width$}  {:<grants_width$}  {:<20}  REVOKED",
        "SERVICE", "GRANTS", "CREATED"
    );
    for (service, grants) in services.iter().zip(&grants) {
        println!(
            "{:<width$}  {:<grants_width$}  {:<20}  {}",
            service.name,
            grants,
            utc(service.created),
            service.revoked.map_or_else(|| "-".to_owned(), utc)
        );
    }
}

fn print_admins(admins: &[AdminInfo]) {
    if admins.is_empty() {
        println!("no admins");
        return;
    }
    let width = column_width(admins.iter().map(|a| a.name.as_str()), "ADMIN");
    println!("{:<width$}  CREATED", "ADMIN");
    for admin in admins {
        println!("{:<width$}  {}", admin.name, utc(admin.created));
    }
}

fn column_width<'a>(names: impl Iterator<Item = &'a str>, header: &str) -> usize {
    names.map(str::len).chain([header.len()]).max().unwrap_or(0)
}

/// `2026-01-31T12:00:00Z` (UTC, whole seconds).
fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_formats_known_instants() {
        let at = |secs| utc(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(at(1_772_323_200), "2026-03-01T00:00:00Z");
    }

    #[test]
    fn data_dir_flag_overrides_the_config_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("tributary.toml");
        std::fs::write(&config, "data_dir = \"/srv/tributary\"\n")?;
        let from_file = DataDirArgs {
            config: Some(config.clone()),
            data_dir: None,
        };
        assert_eq!(from_file.data_dir()?, PathBuf::from("/srv/tributary"));
        let flag = DataDirArgs {
            config: Some(config),
            data_dir: Some(PathBuf::from("elsewhere")),
        };
        assert_eq!(flag.data_dir()?, PathBuf::from("elsewhere"));
        let default = DataDirArgs {
            config: None,
            data_dir: None,
        };
        assert_eq!(default.data_dir()?, PathBuf::from("./data"));
        Ok(())
    }
}
