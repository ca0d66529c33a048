//! A FUSE file system for the power-loss tests: it keeps only what was synced.
//!
//! Everything lives in memory, twice: the *live* state every operation sees, and the *durable* state a
//! drive with a volatile write cache would still hold after the power goes: a file's bytes and size as
//! of its last `fsync`/`fdatasync`, a directory's names as of its last `fsync` (POSIX makes a new,
//! renamed or removed name durable only then). A power cut throws the live state away and rebuilds it
//! from the durable one, the model Jepsen's LazyFS uses for the same purpose. A file whose name was
//! synced but whose bytes never were comes back empty; one whose name was never synced is gone.
//!
//! Driven over standard input, one command a line, each answered with one line on standard output:
//! - `cut`: the power cut. The mount is torn down (the kernel forgets every cached page, name and
//!   attribute, as a reboot would), the live state is replaced by the durable one, and the file system
//!   is mounted again. Kill every process using it first. Answers `ok`.
//! - `stats`: `syncs N dirsyncs N writes N`, counted since the start.
//! - end of input: unmount and exit.
//!
//! Usage: `powerfs MOUNTPOINT`; prints `mounted` once it serves. Linux only; needs /dev/fuse and root
//! (or fusermount3).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test tool: its protocol is stdout

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::BufRead as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

/// The kernel must ask us every time: a cached attribute could outlive a power cut's change.
const TTL: Duration = Duration::ZERO;
/// Dirty-tracking granularity: a sync copies only the pages written since the last one.
const PAGE: usize = 4096;

#[derive(Clone)]
enum Kind {
    File {
        data: Vec<u8>,
        dirty: BTreeSet<usize>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
    },
}

#[derive(Clone)]
struct Inode {
    kind: Kind,
    mode: u16,
    uid: u32,
    gid: u32,
}

#[derive(Default)]
struct State {
    live: HashMap<u64, Inode>,
    /// A file's bytes as of its last sync; a file never synced has none.
    durable_data: HashMap<u64, Vec<u8>>,
    /// A directory's names as of its last sync; a directory never synced has none.
    durable_dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    next_ino: u64,
    syncs: u64,
    dirsyncs: u64,
    writes: u64,
}

const ROOT: u64 = 1;

impl State {
    fn new() -> State {
        let mut s = State {
            next_ino: ROOT + 1,
            ..State::default()
        };
        let root = Inode {
            kind: Kind::Dir {
                entries: BTreeMap::new(),
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        s.live.insert(ROOT, root);
        // The mount point itself always exists, empty, as a freshly made file system would.
        s.durable_dirs.insert(ROOT, BTreeMap::new());
        s
    }

    /// The power cut: the live state becomes what the durable state says, from the root down.
    fn cut(&mut self) {
        let old = std::mem::take(&mut self.live);
        let mut live = HashMap::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            let Some(node) = old.get(&ino) else { continue };
            let kind = match &node.kind {
                Kind::Dir { .. } => {
                    let entries = self.durable_dirs.get(&ino).cloned().unwrap_or_default();
                    stack.extend(entries.values().copied());
                    Kind::Dir { entries }
                }
                Kind::File { .. } => Kind::File {
                    data: self.durable_data.get(&ino).cloned().unwrap_or_default(),
                    dirty: BTreeSet::new(),
                },
            };
            live.insert(
                ino,
                Inode {
                    kind,
                    ..node.clone()
                },
            );
        }
        // Inodes whose names did not survive are gone with everything synced of them.
        self.durable_data.retain(|ino, _| live.contains_key(ino));
        self.durable_dirs.retain(|ino, _| live.contains_key(ino));
        self.live = live;
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.live.get(&ino)?;
        let (kind, size, nlink) = match &node.kind {
            Kind::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Kind::Dir { .. } => (FileType::Directory, 0, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm: node.mode,
            nlink,
            uid: node.uid,
            gid: node.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.live.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::Dir { entries }) => Ok(entries),
            Some(Kind::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        match self.live.get(&parent).map(|n| &n.kind) {
            Some(Kind::Dir { entries }) => entries.get(name).copied().ok_or(Errno::ENOENT),
            Some(Kind::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn make(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let ino = self.next_ino;
        let entries = self.entries_mut(parent)?;
        if entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        entries.insert(name.to_owned(), ino);
        self.next_ino += 1;
        let node = Inode {
            kind,
            mode: u16::try_from(mode & 0o7777).unwrap_or(0o600),
            uid: req.uid(),
            gid: req.gid(),
        };
        self.live.insert(ino, node);
        self.attr(ino).ok_or(Errno::EIO)
    }

    fn file_mut(&mut self, ino: u64) -> Result<(&mut Vec<u8>, &mut BTreeSet<usize>), Errno> {
        match self.live.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File { data, dirty }) => Ok((data, dirty)),
            Some(Kind::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// Changes a file's size; a shrink or growth is itself unsynced until the next sync.
    fn resize(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        let size = usize::try_from(size).map_err(|_| Errno::EFBIG)?;
        let (data, dirty) = self.file_mut(ino)?;
        let from = data.len().min(size);
        data.resize(size, 0);
        dirty.extend(from / PAGE..=size / PAGE);
        Ok(())
    }

    fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
        self.syncs += 1;
        let (data, dirty) = match self.live.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File { data, dirty }) => (data, dirty),
            // Syncing a directory through fsync(2) on its descriptor arrives as fsyncdir.
            Some(Kind::Dir { .. }) => return Ok(()),
            None => return Err(Errno::ENOENT),
        };
        let durable = self.durable_data.entry(ino).or_default();
        durable.resize(data.len(), 0);
        for page in std::mem::take(dirty) {
            let lo = (page * PAGE).min(data.len());
            let hi = ((page + 1) * PAGE).min(data.len());
            if let (Some(to), Some(from)) = (durable.get_mut(lo..hi), data.get(lo..hi)) {
                to.copy_from_slice(from);
            }
        }
        Ok(())
    }

    fn sync_dir(&mut self, ino: u64) -> Result<(), Errno> {
        self.dirsyncs += 1;
        let entries = self.entries_mut(ino)?.clone();
        self.durable_dirs.insert(ino, entries);
        Ok(())
    }
}

/// The mounted file system: a handle on the shared state, which outlives each mount.
struct PowerFs(Arc<Mutex<State>>);

impl PowerFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Filesystem for PowerFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.state();
        match s
            .lookup(parent.0, name)
            .and_then(|i| s.attr(i).ok_or(Errno::ENOENT))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        let mut apply = || -> Result<FileAttr, Errno> {
            if let Some(size) = size {
                s.resize(ino.0, size)?;
            }
            // Modes and owners are metadata the tests do not cut: they apply at once.
            let node = s.live.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            if let Some(mode) = mode {
                node.mode = u16::try_from(mode & 0o7777).unwrap_or(node.mode);
            }
            node.uid = uid.unwrap_or(node.uid);
            node.gid = gid.unwrap_or(node.gid);
            s.attr(ino.0).ok_or(Errno::ENOENT)
        };
        match apply() {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let kind = Kind::Dir {
            entries: BTreeMap::new(),
        };
        match self.state().make(req, parent.0, name, kind, mode & !umask) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let kind = Kind::File {
            data: Vec::new(),
            dirty: BTreeSet::new(),
        };
        match self.state().make(req, parent.0, name, kind, mode & !umask) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        match s.entries_mut(parent.0).map(|e| e.remove(name)) {
            Ok(Some(_)) => reply.ok(),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let check =
            s.lookup(parent.0, name)
                .and_then(|ino| match s.live.get(&ino).map(|n| &n.kind) {
                    Some(Kind::Dir { entries }) if entries.is_empty() => Ok(()),
                    Some(Kind::Dir { .. }) => Err(Errno::ENOTEMPTY),
                    _ => Err(Errno::ENOTDIR),
                });
        match check.and_then(|()| s.entries_mut(parent.0)) {
            Ok(entries) => {
                entries.remove(name);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        let mut apply = || -> Result<(), Errno> {
            let ino = s.lookup(parent.0, name)?;
            s.entries_mut(newparent.0)?;
            s.entries_mut(parent.0)?.remove(name);
            s.entries_mut(newparent.0)?.insert(newname.to_owned(), ino);
            Ok(())
        };
        match apply() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().live.contains_key(&ino.0) {
            // Direct I/O: every read and write comes here, none is served from the kernel's cache.
            true => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            false => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.state();
        match s.file_mut(ino.0) {
            Ok((data, _)) => {
                let lo = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let hi = lo.saturating_add(size as usize).min(data.len());
                reply.data(data.get(lo..hi).unwrap_or_default());
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        s.writes += 1;
        let result = s.file_mut(ino.0).and_then(|(data, dirty)| {
            let lo = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
            let hi = lo.checked_add(bytes.len()).ok_or(Errno::EFBIG)?;
            if data.len() < hi {
                dirty.extend(data.len() / PAGE..=hi / PAGE);
                data.resize(hi, 0);
            }
            data.get_mut(lo..hi)
                .ok_or(Errno::EIO)?
                .copy_from_slice(bytes);
            dirty.extend(lo / PAGE..=hi.saturating_sub(1) / PAGE);
            u32::try_from(bytes.len()).map_err(|_| Errno::EFBIG)
        });
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a sync.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.state().sync_file(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.state().sync_dir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        let result = match (mode, offset.checked_add(length)) {
            (0, Some(end)) => match s.attr(ino.0) {
                Some(attr) if attr.size < end => s.resize(ino.0, end),
                Some(_) => Ok(()),
                None => Err(Errno::ENOENT),
            },
            _ => Err(Errno::EOPNOTSUPP),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.state();
        let entries = match s.live.get(&ino.0).map(|n| &n.kind) {
            Some(Kind::Dir { entries }) => entries,
            Some(Kind::File { .. }) => return reply.error(Errno::ENOTDIR),
            None => return reply.error(Errno::ENOENT),
        };
        let dots = [
            (ino.0, FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, OsString::from("..")),
        ];
        let listed = entries.iter().map(|(name, &child)| {
            let kind = match s.live.get(&child).map(|n| &n.kind) {
                Some(Kind::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (child, kind, name.clone())
        });
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in dots.into_iter().chain(listed).enumerate().skip(skip) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }
}

fn mount(
    state: &Arc<Mutex<State>>,
    at: &std::path::Path,
) -> std::io::Result<fuser::BackgroundSession> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("powerfs".into()),
        MountOption::DefaultPermissions,
    ];
    fuser::spawn_mount(PowerFs(Arc::clone(state)), at, &config)
}

fn main() -> std::process::ExitCode {
    let Some(at) = std::env::args_os().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: powerfs MOUNTPOINT");
        return std::process::ExitCode::from(2);
    };
    let state = Arc::new(Mutex::new(State::new()));
    let mut session = match mount(&state, &at) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("powerfs: mount {}: {e}", at.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("mounted");
    // Its commands, not secrets: the lint that steers secrets to a prompt does not apply.
    #[allow(clippy::disallowed_methods)]
    let commands = std::io::stdin().lock().lines();
    for line in commands {
        let Ok(line) = line else { break };
        match line.trim() {
            "cut" => {
                drop(session);
                state.lock().unwrap_or_else(PoisonError::into_inner).cut();
                session = match mount(&state, &at) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("powerfs: remount {}: {e}", at.display());
                        return std::process::ExitCode::FAILURE;
                    }
                };
                println!("ok");
            }
            "stats" => {
                let s = state.lock().unwrap_or_else(PoisonError::into_inner);
                println!(
                    "syncs {} dirsyncs {} writes {}",
                    s.syncs, s.dirsyncs, s.writes
                );
            }
            other => println!("error: unknown command {other:?}"),
        }
    }
    drop(session);
    std::process::ExitCode::SUCCESS
}
