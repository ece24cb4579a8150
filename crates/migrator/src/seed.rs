//! The legacy seeder (in progress).
