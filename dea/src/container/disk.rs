//! Disk quotas: a writable directory backed by a loop-mounted ext4 image of the quota's size.
//! The host kernel has no project quotas, so a filesystem of the right size is the quota; writes
//! beyond it fail with ENOSPC inside the container.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::{ContainerError, VCAP_GID, VCAP_UID};

/// A mounted, size-limited directory. Call `release` to unmount it and delete its image.
#[derive(Debug)]
pub struct DiskVolume {
    image: PathBuf,
    mountpoint: PathBuf,
    mounted: bool,
}

impl DiskVolume {
    /// Creates a sparse ext4 image of `size_bytes` at `image` and mounts it on `mountpoint`
    /// (created if missing), owned by uid/gid 2000.
    pub async fn create(
        image: &Path,
        mountpoint: &Path,
        size_bytes: u64,
    ) -> Result<DiskVolume, ContainerError> {
        let file = std::fs::File::create(image)
            .map_err(|error| ContainerError::io(format!("creating {}", image.display()), error))?;
        file.set_len(size_bytes)
            .map_err(|error| ContainerError::io(format!("sizing {}", image.display()), error))?;
        drop(file);
        std::fs::create_dir_all(mountpoint).map_err(|error| {
            ContainerError::io(format!("creating {}", mountpoint.display()), error)
        })?;
        let owner = format!("root_owner={VCAP_UID}:{VCAP_GID}");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-E", &owner])
            .arg(image))
        .await?;
        let mut volume = DiskVolume {
            image: image.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            mounted: false,
        };
        run(Command::new("mount")
            .args(["-o", "loop,nosuid,nodev", "-t", "ext4"])
            .arg(image)
            .arg(mountpoint))
        .await?;
        volume.mounted = true;
        // mkfs leaves lost+found, which only root can use; the app has no need for it.
        let _ = std::fs::remove_dir(mountpoint.join("lost+found"));
        Ok(volume)
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts the volume (lazily, should a process still hold it) and deletes the image.
    pub async fn release(mut self) -> Result<(), ContainerError> {
        self.release_inner().await
    }

    async fn release_inner(&mut self) -> Result<(), ContainerError> {
        if self.mounted {
            run(Command::new("umount").arg("-l").arg(&self.mountpoint)).await?;
            self.mounted = false;
        }
        match std::fs::remove_file(&self.image) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(ContainerError::io(
                format!("removing {}", self.image.display()),
                error,
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for DiskVolume {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_file(&self.image);
        }
    }
}

async fn run(command: &mut Command) -> Result<(), ContainerError> {
    let description = format!("{:?}", command.as_std());
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|error| ContainerError::io(format!("running {description}"), error))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ContainerError::Runtime {
            command: description,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}
