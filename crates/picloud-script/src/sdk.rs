//! The SDK as the running engine has it registered, for `GET /api/v1/sdk`.
