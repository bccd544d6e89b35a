"""Encryption of snapshots at rest with age: keys.py says who may read a snapshot and finds
the user's identities, streams.py encrypts and decrypts artifacts as they stream."""
