//! What a list of changes' own versions share (schema 12): a changed file's new version
//! takes the postings of the chunks it starts with unchanged from the rows of the
//! versions it was made from (`version_sources`). A question reads those rows with the
//! own versions' ([`OWN_POSTINGS`]) and gives each sharer the places it takes.

use super::*;

/// What a list of changes' own versions share (schema 12), for the rows of
/// [`OWN_POSTINGS`]: by the version whose rows hold the postings, each sharer and the last
/// place it takes.
pub(super) struct PostingsShared {
    own: Vec<i64>,
    shared: Vec<(i64, i64, i32)>,
}

impl PostingsShared {
    /// For the own versions `own` (sorted or not), of `snapshot`'s list.
    pub(super) fn of(snapshot: &Snapshot, own: &[i64]) -> PostingsShared {
        let mut own = own.to_vec();
        own.sort_unstable();
        let shared = match &snapshot.list {
            FileList::Changes { shared, .. } => shared
                .iter()
                .filter(|(_, sharer, _)| own.binary_search(sharer).is_ok())
                .copied()
                .collect(),
            FileList::Full => Vec::new(),
        };
        PostingsShared { own, shared }
    }

    /// The versions whose rows [`OWN_POSTINGS`] reads: the own ones and those they share.
    pub(super) fn read(&self) -> Vec<i64> {
        let mut read = self.own.clone();
        read.extend(self.shared.iter().map(|(src, ..)| *src));
        read.sort_unstable();
        read.dedup();
        read
    }

    /// For a row of version `blob_id`: each version it gives postings to, with the last
    /// place it gives (all of them for an own version's own row).
    pub(super) fn targets(&self, blob_id: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let own = self
            .own
            .binary_search(&blob_id)
            .ok()
            .map(|_| (blob_id, i64::MAX));
        let from = self.shared.partition_point(|(src, ..)| *src < blob_id);
        let shared = self.shared[from..]
            .iter()
            .take_while(move |(src, ..)| *src == blob_id)
            .map(|&(_, sharer, upto)| (sharer, upto as i64));
        own.into_iter().chain(shared)
    }
}
