import { Article } from './article.entity.js';
import { Comment } from './comment.entity.js';
import { Tag } from './tag.entity.js';

export { Article, Comment, Tag };

/**
 * A blog's entities, beside the fixture's `User`: articles with tags and favourites as
 * many-to-many links, comments deleted by the database with their article
 * (`ON DELETE CASCADE`) and kept anonymous when their author is deleted (`SET NULL`).
 */
export const BLOG_ENTITIES = [Article, Comment, Tag];
