//! openraft glue: type configuration, the sled and in-memory log stores, the state
//! machine adaptor and the node handle used by the query layer.
