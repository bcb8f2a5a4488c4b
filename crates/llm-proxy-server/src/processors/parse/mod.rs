//! The pure text parsers behind the steering processors, public so the fuzz targets reach
//! them: JSON repair and tool calls written as text.

pub mod json;
pub mod tool_text;
