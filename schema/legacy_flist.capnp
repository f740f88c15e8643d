# The structures stored as values of the legacy (0-flist / zflist) `.flist` `entries`
# table, written from the facts in docs/formats.md section 7. Field ordinals and types
# define the wire layout; names are ours. zvfs only reads these messages.
@0xe080abac912a3053;

struct FileBlock {
  hash @0 :Data;
  key @1 :Data;
}

struct File {
  blockSize @0 :UInt16;
  blocks @1 :List(FileBlock);
}

struct Link {
  target @0 :Text;
}

struct SubDir {
  key @0 :Text;
}

struct Special {
  type @0 :Type;
  data @1 :Data;

  enum Type {
    socket @0;
    block @1;
    chardev @2;
    fifopipe @3;
    unknown @4;
  }
}

struct Inode {
  name @0 :Text;
  size @1 :UInt64;
  attributes :union {
    dir @2 :SubDir;
    file @3 :File;
    link @4 :Link;
    special @5 :Special;
  }
  aclkey @6 :Text;
  modificationTime @7 :UInt32;
  creationTime @8 :UInt32;
}

struct Dir {
  name @0 :Text;
  location @1 :Text;
  contents @2 :List(Inode);
  parent @3 :Text;
  size @4 :UInt64;
  aclkey @5 :Text;
  modificationTime @6 :UInt32;
  creationTime @7 :UInt32;
}

struct Right {
  right @0 :Text;
  usergroupid @1 :UInt16;
}

struct Aci {
  uname @0 :Text;
  gname @1 :Text;
  mode @2 :UInt16;
  rights @3 :List(Right);
  id @4 :UInt32;
  uid @5 :Int64 = -1;
  gid @6 :Int64 = -1;
}
