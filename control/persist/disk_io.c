/*
 * disk_io.c — the POSIX backend of the disk tier's I/O (disk_io.h): a
 * directory fd and *at() calls, pwrite/pread looped over short transfers and
 * EINTR, fdatasync, fsync of the directory. Buffered I/O: the log writes
 * whole commit groups and syncs them, so O_DIRECT would only add alignment
 * rules. Thread: the persister.
 */
#include "disk_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool tally_disk_name_valid(const char *name)
{
  assert(name != NULL);
  size_t length = strnlen(name, TALLY_DISK_NAME_SIZE_MAX);
  if (length == 0 || length >= TALLY_DISK_NAME_SIZE_MAX) return false;
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
  return strchr(name, '/') == NULL;
}

static int posix_fd(void *context)
{
  const struct tally_disk_posix *posix = context;
  assert(posix != NULL);
  assert(posix->directory_fd >= 0);
  return posix->directory_fd;
}

static int posix_open(void *context, const char *name, bool create)
{
  assert(tally_disk_name_valid(name));
  int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
  int fd = openat(posix_fd(context), name, flags, 0600);
  return fd >= 0 ? fd : -errno;
}

static void posix_close(void *context, int file)
{
  assert(context != NULL);
  assert(file >= 0);
  close(file); /* after fdatasync, close reports nothing the log can act on */
}

static int posix_write(void *context, int file, const void *data, size_t size, uint64_t offset)
{
  assert(context != NULL);
  assert(data != NULL || size == 0);
  const uint8_t *bytes = data;
  while (size > 0) {
    ssize_t written = pwrite(file, bytes, size, (off_t)offset);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return -errno;
    if (written == 0) return -EIO;
    bytes += written;
    size -= (size_t)written;
    offset += (uint64_t)written;
  }
  return 0;
}

static int64_t posix_read(void *context, int file, void *data, size_t size, uint64_t offset)
{
  assert(context != NULL);
  assert(data != NULL || size == 0);
  size_t done = 0;
  while (done < size) {
    ssize_t got = pread(file, (uint8_t *)data + done, size - done, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -errno;
    if (got == 0) break;
    done += (size_t)got;
  }
  return (int64_t)done;
}

static int posix_sync(void *context, int file)
{
  assert(context != NULL);
  assert(file >= 0);
  return fdatasync(file) == 0 ? 0 : -errno;
}

static int64_t posix_size(void *context, int file)
{
  assert(context != NULL);
  struct stat status;
  if (fstat(file, &status) != 0) return -errno;
  return (int64_t)status.st_size;
}

static int posix_truncate(void *context, int file, uint64_t size)
{
  assert(context != NULL);
  assert(file >= 0);
  return ftruncate(file, (off_t)size) == 0 ? 0 : -errno;
}

static int posix_unlink(void *context, const char *name)
{
  assert(tally_disk_name_valid(name));
  return unlinkat(posix_fd(context), name, 0) == 0 ? 0 : -errno;
}

static int posix_rename(void *context, const char *from, const char *to)
{
  assert(tally_disk_name_valid(from));
  assert(tally_disk_name_valid(to));
  int fd = posix_fd(context);
  return renameat(fd, from, fd, to) == 0 ? 0 : -errno;
}

static int posix_sync_dir(void *context)
{
  return fsync(posix_fd(context)) == 0 ? 0 : -errno;
}

static int posix_list(void *context, char (*names)[TALLY_DISK_NAME_SIZE_MAX], uint32_t names_max)
{
  assert(names != NULL);
  int fd = dup(posix_fd(context));
  if (fd < 0) return -errno;
  DIR *directory = fdopendir(fd);
  if (directory == NULL) {
    int error = errno;
    close(fd);
    return -error;
  }
  rewinddir(directory);
  uint32_t count = 0;
  int result = 0;
  for (struct dirent *entry; (entry = readdir(directory)) != NULL;) {
    if (!tally_disk_name_valid(entry->d_name)) continue; /* ".", "..", too long */
    if (count == names_max) {
      result = -E2BIG;
      break;
    }
    size_t length = strlen(entry->d_name); /* < TALLY_DISK_NAME_SIZE_MAX: checked above */
    memcpy(names[count++], entry->d_name, length + 1u);
  }
  closedir(directory);
  return result != 0 ? result : (int)count;
}

/* fsync of path's parent directory, so that a directory just made survives a power loss. */
static int posix_sync_parent(const char *path)
{
  assert(path != NULL);
  char parent[TALLY_PATH_MAX];
  if (snprintf(parent, sizeof parent, "%s", path) >= (int)sizeof parent) return -ENAMETOOLONG;
  size_t length = strlen(parent);
  while (length > 1 && parent[length - 1] == '/') parent[--length] = '\0';
  char *slash = strrchr(parent, '/');
  if (slash == NULL) snprintf(parent, sizeof parent, ".");
  else if (slash == parent) parent[1] = '\0';
  else *slash = '\0';
  int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int result = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return result;
}

static const struct tally_disk_ops posix_ops = {
  .open = posix_open, .close = posix_close, .write = posix_write, .read = posix_read,
  .sync = posix_sync, .size = posix_size, .truncate = posix_truncate, .unlink = posix_unlink,
  .rename = posix_rename, .sync_dir = posix_sync_dir, .list = posix_list,
};

int tally_disk_posix_open(struct tally_disk *disk, struct tally_disk_posix *posix,
  const char *path, char *error, size_t error_size)
{
  assert(disk != NULL);
  assert(posix != NULL);
  assert(path != NULL);
  if (mkdir(path, 0700) == 0) {
    int code = posix_sync_parent(path);
    if (code != 0) {
      snprintf(error, error_size, "cannot sync the parent of %s: %s", path, strerror(-code));
      return code;
    }
  } else if (errno != EEXIST) {
    int code = errno;
    snprintf(error, error_size, "cannot create the log directory %s: %s", path, strerror(code));
    return -code;
  }
  posix->directory_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (posix->directory_fd < 0) {
    int code = errno;
    snprintf(error, error_size, "cannot open the log directory %s: %s", path, strerror(code));
    return -code;
  }
  disk->ops = &posix_ops;
  disk->context = posix;
  return 0;
}

void tally_disk_posix_close(struct tally_disk_posix *posix)
{
  assert(posix != NULL);
  if (posix->directory_fd >= 0) close(posix->directory_fd);
  posix->directory_fd = -1;
}
