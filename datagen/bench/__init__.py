"""Measurements that back the defaults and the speed claims: `datagen bench train|augment|scaling|noise`."""
