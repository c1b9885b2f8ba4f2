//! `raftkv snapshot save FILE` and `raftkv snapshot restore FILE`: backups
//! of a running cluster, and new data dirs seeded from one (see
//! `server::backup` for the file format and how a restore works, and
//! docs/operations.md, "Backup and restore", for the procedure).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::exit::CliError;
use crate::output::print_json;
use crate::ClientOpts;

/// Streams a backup from the cluster's leader into `file` (written next to
/// it as `FILE.part`, renamed once complete and synced).
pub async fn save(opts: &ClientOpts, file: &Path) -> Result<(), CliError> {
    let c = opts.client()?;
    let part = part_path(file);
    let result = save_to(&c, &part).await;
    let (crc, bytes, index, term, chunks) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, file).map_err(|e| {
        CliError::Failed(format!(
            "rename {} to {}: {e}",
            part.display(),
            file.display()
        ))
    })?;
    if opts.json {
        print_json(&json!({
            "file": file.display().to_string(),
            "index": index,
            "term": term,
            "chunks": chunks,
            "bytes": bytes,
            "crc32c": format!("{crc:08x}"),
        }));
    } else {
        println!(
            "saved {} ({bytes} bytes, state at index {index}, term {term}; crc32c {crc:08x})",
            file.display()
        );
    }
    Ok(())
}

fn part_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

async fn save_to(c: &client::Client, part: &Path) -> Result<(u32, u64, u64, u64, u64), CliError> {
    let out = std::fs::File::create(part)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", part.display())))?;
    let mut stream = c.backup().await?;
    let mut writer: Option<server::backup::BackupWriter<std::io::BufWriter<std::fs::File>>> = None;
    let mut out = Some(std::io::BufWriter::new(out));
    let (mut index, mut term, mut chunks) = (0, 0, 0u64);
    let failed =
        |e: &dyn std::fmt::Display| CliError::Failed(format!("writing {}: {e}", part.display()));
    loop {
        let chunk = match stream.message().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(status) => {
                return Err(CliError::Failed(format!(
                    "the backup stream broke off: {}",
                    status.message()
                )))
            }
        };
        let w = match &mut writer {
            Some(w) => w,
            None => {
                (index, term) = (chunk.index, chunk.term);
                let Some(file) = out.take() else {
                    return Err(CliError::Failed("backup writer lost".into()));
                };
                writer.insert(
                    server::backup::BackupWriter::new(file, index, term).map_err(|e| failed(&e))?,
                )
            }
        };
        w.chunk(&chunk.data).map_err(|e| failed(&e))?;
        chunks += 1;
    }
    let Some(w) = writer else {
        return Err(CliError::Failed("the node sent an empty backup".into()));
    };
    let (crc, bytes, buffered) = w.finish().map_err(|e| failed(&e))?;
    let file = buffered
        .into_inner()
        .map_err(|e| failed(&e.error().to_string()))?;
    file.sync_all().map_err(|e| failed(&e))?;
    Ok((crc, bytes, index, term, chunks))
}

/// Seeds `data_dir` for node `id` of a new cluster of `peers` from `file`.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    id: u64,
    peers: &[(u64, String)],
    json_out: bool,
) -> Result<(), CliError> {
    let peers: BTreeMap<u64, String> = peers.iter().cloned().collect();
    let info =
        server::backup::restore_data_dir(file, data_dir, id, &peers).map_err(|e| match e {
            server::ServerError::Config(c) => CliError::BadInput(c.to_string()),
            e => CliError::Failed(e.to_string()),
        })?;
    if json_out {
        print_json(&json!({
            "data_dir": data_dir.display().to_string(),
            "id": id,
            "index": info.index,
            "term": info.term,
            "crc32c": format!("{:08x}", info.crc),
        }));
    } else {
        println!(
            "restored {} into {} for node {id} (state at index {}; crc32c {:08x} checked)",
            file.display(),
            data_dir.display(),
            info.index,
            info.crc
        );
        let _ = std::io::stdout().flush();
    }
    Ok(())
}
